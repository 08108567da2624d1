#!/bin/sh
# Makes sure a locale can be loaded, for the tests that check vial does not
# follow the application's locale: de_DE (decimal comma, German day names;
# the default) or tr_TR (whose 'I' does not lower to 'i'). Usage:
#     scripts/mklocale.sh [de_DE|tr_TR]
# Prints the LOCPATH to run under: empty when the system has <name>.UTF-8,
# else a per-user directory it compiled the locale into (localedef, from the
# Debian package `locales`; no root, no /etc/locale.gen edit, nothing
# interactive). Exits 1 when the locale cannot be made (tests then skip).
set -eu
name="${1:-de_DE}"
case "$name" in *[!A-Za-z_]*) echo "bad locale name: $name" >&2; exit 2 ;; esac
if locale -a 2>/dev/null | grep -qix "$name\.utf-\{0,1\}8"; then
  echo ""
  exit 0
fi
dir="${TMPDIR:-/tmp}/vial-locales-$(id -u)"
if [ ! -f "$dir/$name.UTF-8/LC_CTYPE" ]; then
  command -v localedef >/dev/null 2>&1 || exit 1
  mkdir -p "$dir"
  tmp="$dir/.$name.$$"
  localedef -i "$name" -f UTF-8 "$tmp" >/dev/null 2>&1 || true
  [ -f "$tmp/LC_CTYPE" ] && [ -f "$tmp/LC_NUMERIC" ] || { rm -rf "$tmp"; exit 1; }
  rm -rf "$dir/$name.UTF-8"
  mv "$tmp" "$dir/$name.UTF-8" 2>/dev/null || rm -rf "$tmp" # a parallel run won
fi
echo "$dir"
