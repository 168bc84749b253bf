package statefun

// Version is the version of the statefun runtime.
const Version = "0.1.0"

// SupportPackageIsVersion1 is referenced by generated code. A file generated
// by a protoc-gen-statefun that needs a newer runtime refers to a constant
// this runtime does not have, so the mismatch fails at build time, not at
// run time. Newer runtimes keep the older constants as long as they support
// the code that uses them.
const SupportPackageIsVersion1 = true
