// Deterministic random numbers whose whole state is four 64-bit words, so a
// checkpoint stores it and a restart continues the same sequence (xoshiro256**).
#pragma once
#include <array>
#include <cstdint>

namespace temper {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) { seed_with(seed); }
  void seed_with(uint64_t seed);
  uint64_t next_u64();
  double uniform();                     // [0, 1)
  float normal();                       // standard normal (Box-Muller, no cached value)
  uint64_t below(uint64_t n);           // uniform integer in [0, n)
  std::array<uint64_t, 4> state() const { return s_; }
  void set_state(const std::array<uint64_t, 4>& s) { s_ = s; }

 private:
  std::array<uint64_t, 4> s_{};
};

// A stateless 64-bit mix, for deriving independent seeds: mix(seed, stream).
uint64_t mix64(uint64_t a, uint64_t b = 0);

}  // namespace temper
