// Saved state of the RL bookkeeping objects (difficulty filter, task mixer):
// plain vectors of integers and doubles, plus a lossless packing into the
// uint64 vectors that a CheckpointState stores (doubles by their bit pattern).
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"

namespace temper {

struct RlSavedState {
  std::vector<int64_t> ints;
  std::vector<double> doubles;

  // Layout: [n_ints, n_doubles, ints..., doubles' bits...].
  std::vector<uint64_t> pack() const {
    std::vector<uint64_t> out;
    out.reserve(2 + ints.size() + doubles.size());
    out.push_back(ints.size());
    out.push_back(doubles.size());
    for (int64_t v : ints) out.push_back(static_cast<uint64_t>(v));
    for (double d : doubles) {
      uint64_t bits;
      std::memcpy(&bits, &d, sizeof bits);
      out.push_back(bits);
    }
    return out;
  }

  // `what` names the checkpoint entry in error messages.
  static RlSavedState unpack(const std::vector<uint64_t>& v, const std::string& what) {
    TEMPER_CHECK(v.size() >= 2 && v[0] <= v.size() && v[1] <= v.size() && 2 + v[0] + v[1] == v.size(),
                 "checkpoint entry '", what, "' is malformed (", v.size(),
                 " words, header does not match); the checkpoint was not written by this temper");
    RlSavedState s;
    s.ints.reserve(v[0]);
    s.doubles.reserve(v[1]);
    for (uint64_t i = 0; i < v[0]; ++i) s.ints.push_back(static_cast<int64_t>(v[2 + i]));
    for (uint64_t i = 0; i < v[1]; ++i) {
      double d;
      std::memcpy(&d, &v[2 + v[0] + i], sizeof d);
      s.doubles.push_back(d);
    }
    return s;
  }
};

}  // namespace temper
