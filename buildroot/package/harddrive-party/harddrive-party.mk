################################################################################
#
# harddrive-party
#
################################################################################

HARDDRIVE_PARTY_VERSION = 0.1.0
# This checkout: the external tree is its buildroot/ directory.
HARDDRIVE_PARTY_SITE = $(BR2_EXTERNAL_HARDDRIVE_PARTY_PATH)/..
HARDDRIVE_PARTY_SITE_METHOD = local
# Leave out build output, and the zig-oriented .cargo/config.toml: Buildroot sets up its
# own cross toolchain and linker for cargo.
HARDDRIVE_PARTY_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--exclude target --exclude .cargo --exclude node_modules
# The binary crate is daemon/ in the workspace (Cargo.lock is at the top).
HARDDRIVE_PARTY_SUBDIR = daemon
HARDDRIVE_PARTY_LICENSE = AGPL-3.0-or-later
HARDDRIVE_PARTY_LICENSE_FILES = LICENSE

# A local site is not downloaded, so Buildroot's download step does not vendor the
# crates; fetch them into Buildroot's cargo home before its --offline build.
define HARDDRIVE_PARTY_CARGO_FETCH
	cd $(@D) && $(TARGET_MAKE_ENV) $(PKG_CARGO_ENV) \
		cargo fetch --locked --manifest-path Cargo.toml
endef
HARDDRIVE_PARTY_PRE_BUILD_HOOKS += HARDDRIVE_PARTY_CARGO_FETCH

define HARDDRIVE_PARTY_USERS
	harddrive-party -1 harddrive-party -1 * /var/lib/harddrive-party - - harddrive-party daemon
endef

define HARDDRIVE_PARTY_INSTALL_CONFIG
	$(INSTALL) -D -m 0644 $(@D)/debian/config.toml \
		$(TARGET_DIR)/etc/harddrive-party/config.toml
endef
HARDDRIVE_PARTY_POST_INSTALL_TARGET_HOOKS += HARDDRIVE_PARTY_INSTALL_CONFIG

define HARDDRIVE_PARTY_INSTALL_INIT_SYSV
	$(INSTALL) -D -m 0755 $(HARDDRIVE_PARTY_PKGDIR)/S99harddrive-party \
		$(TARGET_DIR)/etc/init.d/S99harddrive-party
endef

define HARDDRIVE_PARTY_INSTALL_INIT_SYSTEMD
	$(INSTALL) -D -m 0644 $(HARDDRIVE_PARTY_PKGDIR)/harddrive-party.service \
		$(TARGET_DIR)/usr/lib/systemd/system/harddrive-party.service
endef

$(eval $(cargo-package))
