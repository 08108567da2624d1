/* A command-line face of vial_password_* for the interoperability test:
 *   password_tool hash PASSWORD [METHOD]   prints the hash
 *   password_tool verify HASH PASSWORD     prints 1, 0, or the error code */
#include <vial.h>

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    char out[512];
    if (argc >= 3 && !strcmp(argv[1], "hash")) {
        int r = vial_password_hash_with(argv[2], argc > 3 ? argv[3] : NULL, out, sizeof out);
        if (r < 0) {
            fprintf(stderr, "%s\n", vial_strerror(r));
            return 1;
        }
        puts(out);
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "verify")) {
        printf("%d\n", vial_password_verify(argv[2], argv[3]));
        return 0;
    }
    fprintf(stderr, "usage: password_tool hash PASSWORD [METHOD] | verify HASH PASSWORD\n");
    return 2;
}
