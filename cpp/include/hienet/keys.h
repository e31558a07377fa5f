// Names of the tensors that flow through HIENet: the C++ mirror of hienet/graph/keys.py
// (tests/test_cpp_runtime.py::test_keys_mirror_python checks that the two agree), plus the
// metadata.json keys of the exported file (export/FORMAT.md; lower case, because torch
// defines a TORCH_VERSION macro).
#ifndef HIENET_KEYS_H
#define HIENET_KEYS_H

namespace hienet {
namespace keys {

constexpr const char *SPECIES = "species";          // (N,) int64, index into the model's species
constexpr const char *POSITIONS = "positions";      // (N, 3) Å
constexpr const char *CELL = "cell";                // (B, 3, 3) Å, rows are lattice vectors
constexpr const char *PBC = "pbc";                  // (B, 3) bool
constexpr const char *EDGE_INDEX = "edge_index";    // (2, E) int64: [centre i, neighbour j]
constexpr const char *EDGE_SHIFT = "edge_shift";    // (E, 3) integer cell shifts S of neighbour j
constexpr const char *EDGE_VEC = "edge_vec";        // (E, 3) Å: x_j - x_i + S @ cell
constexpr const char *BATCH = "batch";              // (N,) int64, graph index of each node
constexpr const char *NUM_ATOMS = "num_atoms";      // (B,) int64
constexpr const char *VOLUME = "volume";            // (B,) Å^3

constexpr const char *ATOM_ENERGY = "atom_energy";  // (N,) eV
constexpr const char *ENERGY = "energy";            // (B,) eV
constexpr const char *FORCES = "forces";            // (N, 3) eV/Å
constexpr const char *STRESS = "stress";            // (B, 3, 3) eV/Å^3, ASE sign (tensile positive)
constexpr const char *VIRIAL = "virial";            // (B, 3, 3) eV, W = -sum_e edge_vec ⊗ dE/d(edge_vec)
constexpr const char *EDGE_GRAD = "edge_grad";      // (E, 3) eV/Å, dE/d(edge_vec)

// Two atoms closer than this (Å) count as coincident: an error naming both, never NaN.
constexpr double MIN_ATOM_DISTANCE = 0.1;

}    // namespace keys

namespace metadata_keys {

constexpr const char *file_name = "metadata.json";  // extra file of the TorchScript archive
constexpr const char *format_version = "format_version";
constexpr const char *hienet_version = "hienet_version";
constexpr const char *cutoff = "cutoff";
constexpr const char *num_message_passing_layers = "num_message_passing_layers";
constexpr const char *species = "species";
constexpr const char *dtype = "dtype";
constexpr const char *torch_version = "torch_version";
constexpr const char *model_hash = "model_hash";
constexpr const char *exchange_widths = "exchange_widths";    // format version 2
constexpr const char *archive_digest = "archive_digest";
constexpr const char *convolution = "convolution";
constexpr const char *custom_ops = "custom_ops";

}    // namespace metadata_keys
}    // namespace hienet

#endif
