// forge HOST PORT FAKE_EXE: see libforge.c.
#include <stdlib.h>

void forge_and_talk(const char *fake_exe, const char *host, int port);

int main(int argc, char **argv)
{
	if (argc != 4)
		return 64;
	forge_and_talk(argv[3], argv[1], atoi(argv[2]));
	return 1;
}
