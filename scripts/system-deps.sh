#!/bin/sh
# Install the system programs that widen what tribrid can parse, if any is missing:
#   tesseract + pdftoppm  OCR of images and of PDFs without a text layer
#   soffice               legacy .doc and .ppt files (converted by LibreOffice)
# tribrid works without them: those files then fail with a reason that says what to
# install. Installs only as root with apt-get; otherwise prints one note and goes on.
# Idempotent, and instant when everything is there.
set -u

missing=""
command -v tesseract >/dev/null 2>&1 || missing="$missing tesseract-ocr tesseract-ocr-eng"
command -v pdftoppm >/dev/null 2>&1 || missing="$missing poppler-utils"
command -v soffice >/dev/null 2>&1 ||
    missing="$missing libreoffice-writer-nogui libreoffice-impress-nogui"
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: not installed:$missing (images, scanned PDFs, .doc/.ppt will fail with a reason)"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# The package lists may be missing or stale on a fresh machine; refresh them only now.
# shellcheck disable=SC2086  # $missing is a list of package names
if apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null
then
    exit 0
fi
echo "note: could not install$missing (images, scanned PDFs, .doc/.ppt will fail with a reason)"
exit 0
