// Integrity of an exported model file: its archive digest (export/FORMAT.md, "Integrity").
#ifndef HIENET_SRC_ARCHIVE_H
#define HIENET_SRC_ARCHIVE_H

#include "hienet/model.h"

#include <string>

namespace hienet {

// Throws hienet::Error naming `path` unless its records match meta.archive_digest.
void verify_archive(const std::string &path, const Metadata &meta);

}    // namespace hienet

#endif
