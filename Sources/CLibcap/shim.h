/* Debian's libcap (libcap-dev): capability sets of this process. */
#include <sys/capability.h>
