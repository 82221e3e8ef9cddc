include $(sort $(wildcard $(BR2_EXTERNAL_HARDDRIVE_PARTY_PATH)/package/*/*.mk))
