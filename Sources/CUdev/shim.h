/* libudev (apt libudev-dev), for ctrobjd's uevent monitor. */
#include <libudev.h>
