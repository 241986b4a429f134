/* Upcall benchmark: the startup reference for ctrobj-upcall (which prints
 * its usage and exits 2 without arguments).  Built static. */
int main(void) { return 2; }
