// Reads the text of a QR code in a photo: the browser's BarcodeDetector where it has one
// (Android, macOS, ChromeOS), else the vendored jsQR, fetched only on first use.

const JSQR_URL = '/vendor/jsqr/jsQR.js';
// A phone photo has 12 MP: scan a reduced copy first (fast), then a larger one, since a
// small code far from the lens needs the detail.
const SCAN_WIDTHS = [1000, 2000];

let jsQrLoading = null;

// jsQR is a UMD bundle: as a classic script it defines window.jsQR.
function loadJsQr() {
  if (!jsQrLoading) {
    jsQrLoading = new Promise((resolve, reject) => {
      const script = document.createElement('script');
      script.src = JSQR_URL;
      script.onload = () => (typeof window.jsQR === 'function' ? resolve(window.jsQR) : reject(new Error('the QR decoder did not load')));
      // Router builds carry no decoder of their own (to fit their flash): say what works.
      script.onerror = () => { jsQrLoading = null; reject(new Error('This browser cannot read QR codes here: paste the code instead (your phone\'s camera app can read the QR and copy its text).')); };
      document.head.append(script);
    });
  }
  return jsQrLoading;
}

async function detectNatively(bitmap) {
  if (!('BarcodeDetector' in window)) return undefined;
  try {
    const formats = await window.BarcodeDetector.getSupportedFormats();
    if (!formats.includes('qr_code')) return undefined;
    const found = await new window.BarcodeDetector({ formats: ['qr_code'] }).detect(bitmap);
    return found.length ? found[0].rawValue : null;
  } catch {
    return undefined; // a detector that fails to start: fall back to jsQR
  }
}

function pixelsAt(bitmap, width) {
  const scale = Math.min(1, width / Math.max(bitmap.width, bitmap.height));
  const w = Math.max(1, Math.round(bitmap.width * scale));
  const hgt = Math.max(1, Math.round(bitmap.height * scale));
  const canvas = document.createElement('canvas');
  canvas.width = w;
  canvas.height = hgt;
  const g = canvas.getContext('2d', { willReadFrequently: true });
  // Transparent pixels (an SVG or PNG code) would read as black: lay them on white.
  g.fillStyle = '#fff';
  g.fillRect(0, 0, w, hgt);
  g.drawImage(bitmap, 0, 0, w, hgt);
  return g.getImageData(0, 0, w, hgt);
}

// The text of the first QR code found in the image file, or null if there is none.
export async function readQrCode(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    throw new Error('That file is not a picture this browser can read.');
  }
  try {
    const native = await detectNatively(bitmap);
    if (native !== undefined) return native;
    const jsQR = await loadJsQr();
    for (const width of SCAN_WIDTHS) {
      const image = pixelsAt(bitmap, width);
      const found = jsQR(image.data, image.width, image.height, { inversionAttempts: 'attemptBoth' });
      if (found && found.data) return found.data;
      if (Math.max(bitmap.width, bitmap.height) <= width) break;
    }
    return null;
  } finally {
    bitmap.close();
  }
}
