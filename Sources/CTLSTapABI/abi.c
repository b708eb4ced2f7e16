/* SwiftPM needs a source file in a C target; the ABI is all in the header. */
#include "tlstap_abi.h"
