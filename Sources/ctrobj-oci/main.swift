import OCIRuntime
#if canImport(Glibc)
import Glibc
#endif

// ctrobj-oci: the runc command line over container objects (docs/oci.md).
exit(OCICommandLine.main(CommandLine.arguments))
