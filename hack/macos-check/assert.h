/* A stand-in for the macOS SDK's header, for hack/check-plugin.sh only (see there). */
#define assert(x) ((void)0)
