/* Upcall benchmark: a static init for an empty-root container. */
#include <unistd.h>

int main(void)
{
	for (;;)
		pause();
}
