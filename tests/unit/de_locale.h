/* For tests that check vial's output does not follow the process locale:
 * switches the whole process to de_DE.UTF-8 (decimal comma, German names),
 * from the system or compiled by scripts/mklocale.sh into a directory named
 * by LOCPATH. Returns 0 when the locale cannot be had (the test then skips).
 * Undo with setlocale(LC_ALL, "C"). */
#ifndef VIAL_TEST_DE_LOCALE_H
#define VIAL_TEST_DE_LOCALE_H

#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int vial_test_german_locale(void)
{
    if (setlocale(LC_ALL, "de_DE.UTF-8"))
        return 1;
    char cmd[4096], dir[4096] = "";
    const char *src = __FILE__; /* .../tests/unit/de_locale.h */
    const char *cut = strstr(src, "tests/unit/");
    if (!cut)
        return 0;
    snprintf(cmd, sizeof cmd, "sh '%.*sscripts/mklocale.sh'", (int)(cut - src), src);
    FILE *p = popen(cmd, "r");
    if (!p)
        return 0;
    if (!fgets(dir, sizeof dir, p))
        dir[0] = 0;
    if (pclose(p) != 0)
        return 0;
    dir[strcspn(dir, "\n")] = 0;
    if (dir[0])
        setenv("LOCPATH", dir, 1);
    if (!setlocale(LC_ALL, "de_DE.UTF-8"))
        return 0;
    /* really comma-decimal, or the test would prove nothing */
    char probe[16];
    snprintf(probe, sizeof probe, "%.2f", 3.25);
    return !strcmp(probe, "3,25");
}

#endif
