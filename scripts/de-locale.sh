#!/bin/sh
# Makes sure the comma-decimal locale de_DE.UTF-8 can be loaded, for the tests
# that check vial's output does not follow the application's locale. Prints
# the LOCPATH to run under: empty when the system has the locale, else a
# per-user directory it compiled the locale into (localedef from the Debian
# package `locales`; no root, no /etc/locale.gen edit, nothing interactive).
# Exits 1 when the locale cannot be made (tests then skip).
set -eu
if locale -a 2>/dev/null | grep -qix 'de_DE\.utf-\{0,1\}8'; then
  echo ""
  exit 0
fi
dir="${TMPDIR:-/tmp}/vial-locales-$(id -u)"
if [ ! -f "$dir/de_DE.UTF-8/LC_NUMERIC" ]; then
  command -v localedef >/dev/null 2>&1 || exit 1
  mkdir -p "$dir"
  tmp="$dir/.de_DE.$$"
  localedef -i de_DE -f UTF-8 "$tmp" >/dev/null 2>&1 || true
  [ -f "$tmp/LC_NUMERIC" ] || { rm -rf "$tmp"; exit 1; }
  rm -rf "$dir/de_DE.UTF-8"
  mv "$tmp" "$dir/de_DE.UTF-8" 2>/dev/null || rm -rf "$tmp" # a parallel run won
fi
echo "$dir"
