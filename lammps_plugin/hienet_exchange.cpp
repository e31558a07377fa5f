/* ----------------------------------------------------------------------------------------
   Inter-rank exchange of node features for pair_style hienet (see hienet_exchange.h).
------------------------------------------------------------------------------------------ */

#include "hienet_exchange.h"
#include "hienet_lammps_compat.h"

#include "comm.h"
#include "lammps.h"
#include "error.h"
#include "pair.h"

#include <algorithm>
#include <cstring>

using namespace LAMMPS_NS;

/* ---------------------------------------------------------------------- */

HIENetExchange::HIENetExchange(LAMMPS *lammps, Pair *owner) : lmp(lammps), pair(owner) {}

/* ---------------------------------------------------------------------- */

int HIENetExchange::slots(int width, hienet::RowType type)
{
  const size_t bytes = static_cast<size_t>(width) *
      (type == hienet::RowType::Float32 ? sizeof(float) : sizeof(double));
  return static_cast<int>((bytes + sizeof(double) - 1) / sizeof(double));
}

int HIENetExchange::max_slots(const std::vector<int> &widths, hienet::RowType type)
{
  int most = 0;
  for (int w : widths) most = std::max(most, slots(w, type));
  return most;
}

/* ---------------------------------------------------------------------- */

void HIENetExchange::begin(void *data, int w, hienet::RowType t)
{
  if (!nodes) lmp->error->one(FLERR, "pair_style hienet: feature exchange without a graph");
  rows = static_cast<char *>(data);
  width = w;
  type = t;
  row_bytes = static_cast<size_t>(w) *
      (t == hienet::RowType::Float32 ? sizeof(float) : sizeof(double));
  row_slots = slots(w, t);
  if (row_slots > pair->comm_forward || row_slots > pair->comm_reverse)
    lmp->error->one(FLERR, "pair_style hienet: exchanged features of width {} exceed the "
               "communication buffer ({} values per atom)", w, pair->comm_forward);
}

void HIENetExchange::forward(void *data, int64_t, int w, hienet::RowType t)
{
  begin(data, w, t);
  hienet_lammps::forward_comm(lmp->comm, pair, row_slots);
}

void HIENetExchange::reverse(void *data, int64_t, int w, hienet::RowType t)
{
  begin(data, w, t);
  hienet_lammps::reverse_comm(lmp->comm, pair, row_slots);
}

void HIENetExchange::owners_with_images(int64_t, int64_t n_local, std::vector<int64_t> &owners)
{
  if (!nodes) lmp->error->one(FLERR, "pair_style hienet: feature exchange without a graph");
  owners.clear();
  probed = &owners;
  probe_n_local = n_local;
  row_slots = 1;
  lmp->comm->forward_comm(pair, 1);
  probed = nullptr;
}

/* ---------------------------------------------------------------------- */

int HIENetExchange::node_of(int a) const
{
  return a < static_cast<int>(nodes->size()) ? (*nodes)[a] : -1;
}

void HIENetExchange::pack_row(int a, double *slot) const
{
  const int node = node_of(a);
  char *bytes = reinterpret_cast<char *>(slot);
  const size_t slot_bytes = sizeof(double) * row_slots;
  if (node < 0) {
    std::memset(bytes, 0, slot_bytes);
    return;
  }
  std::memcpy(bytes, rows + row_bytes * node, row_bytes);
  if (slot_bytes > row_bytes) std::memset(bytes + row_bytes, 0, slot_bytes - row_bytes);
}

int HIENetExchange::pack_forward(int n, const int *list, double *buf) const
{
  if (probed) {    // owners_with_images(): note the owners sent, send nothing of interest
    for (int i = 0; i < n; i++) {
      const int node = node_of(list[i]);
      if (node >= 0 && node < probe_n_local) probed->push_back(node);
      buf[i] = 0.0;
    }
    return n;
  }
  for (int i = 0; i < n; i++) pack_row(list[i], buf + static_cast<size_t>(row_slots) * i);
  return n * row_slots;
}

void HIENetExchange::unpack_forward(int n, int first, const double *buf)
{
  if (probed) return;
  for (int i = 0; i < n; i++) {
    const int node = node_of(first + i);
    if (node >= 0)
      std::memcpy(rows + row_bytes * node, buf + static_cast<size_t>(row_slots) * i, row_bytes);
  }
}

int HIENetExchange::pack_reverse(int n, int first, double *buf) const
{
  for (int i = 0; i < n; i++) pack_row(first + i, buf + static_cast<size_t>(row_slots) * i);
  return n * row_slots;
}

namespace {
template <typename T>
void add_row(char *dst, const double *src, int width)
{
  T *d = reinterpret_cast<T *>(dst);
  T s[1];
  const char *bytes = reinterpret_cast<const char *>(src);
  for (int c = 0; c < width; c++) {
    std::memcpy(s, bytes + sizeof(T) * c, sizeof(T));    // the buffer may not be T-aligned
    d[c] += s[0];
  }
}
}    // namespace

void HIENetExchange::unpack_reverse(int n, const int *list, const double *buf)
{
  for (int i = 0; i < n; i++) {
    const int node = node_of(list[i]);
    if (node < 0) continue;
    const double *slot = buf + static_cast<size_t>(row_slots) * i;
    if (type == hienet::RowType::Float32) add_row<float>(rows + row_bytes * node, slot, width);
    else add_row<double>(rows + row_bytes * node, slot, width);
  }
}
