// RlSample encoding and its trajectory dump (see rl_sample.h).
#include "rl/rl_sample.h"

#include <cstring>

#include "core/error.h"

namespace temper {

namespace {

class Writer {
 public:
  template <class T>
  void put(const T& v) {
    const size_t n = out.size();
    out.resize(n + sizeof(T));
    std::memcpy(&out[n], &v, sizeof(T));
  }
  template <class T>
  void put_vec(const std::vector<T>& v) {
    put(uint64_t(v.size()));
    const size_t n = out.size();
    out.resize(n + v.size() * sizeof(T));
    if (!v.empty()) std::memcpy(&out[n], v.data(), v.size() * sizeof(T));
  }
  void put_str(const std::string& s) { put_vec(std::vector<char>(s.begin(), s.end())); }
  std::string out;
};

class Reader {
 public:
  explicit Reader(const std::string& s) : s_(s) {}
  template <class T>
  T get() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, &s_[pos_], sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  template <class T>
  std::vector<T> get_vec() {
    const uint64_t n = get<uint64_t>();
    TEMPER_CHECK(n <= (s_.size() - pos_) / sizeof(T), "unpack_samples: a vector of ", n, " elements overruns the data");
    std::vector<T> v(n);
    if (n) std::memcpy(v.data(), &s_[pos_], n * sizeof(T));
    pos_ += n * sizeof(T);
    return v;
  }
  std::string get_str() {
    const auto v = get_vec<char>();
    return std::string(v.begin(), v.end());
  }
  bool done() const { return pos_ == s_.size(); }

 private:
  void need(size_t n) const {
    TEMPER_CHECK(pos_ + n <= s_.size(), "unpack_samples: truncated data (", s_.size(), " bytes)");
  }
  const std::string& s_;
  size_t pos_ = 0;
};

std::vector<float> to_float(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

}  // namespace

std::string pack_samples(const std::vector<RlSample>& samples) {
  Writer w;
  w.put(uint64_t(samples.size()));
  for (const RlSample& s : samples) {
    w.put(s.prompt_index);
    w.put(s.group);
    w.put(s.index);
    w.put_str(s.task);
    w.put_vec(s.prompt);
    w.put_vec(s.response);
    w.put_vec(s.sampler_logp);
    w.put_str(s.finish);
    w.put(s.reward);
    w.put(int32_t(s.verdict));
    w.put(uint8_t(s.discarded));
    w.put(s.advantage);
    w.put(s.pass_rate);
    w.put_vec(s.behaviour_logp);
    w.put_vec(s.current_logp);
  }
  return w.out;
}

std::vector<RlSample> unpack_samples(const std::string& bytes) {
  Reader r(bytes);
  const uint64_t n = r.get<uint64_t>();
  std::vector<RlSample> out;
  for (uint64_t i = 0; i < n; ++i) {
    RlSample s;
    s.prompt_index = r.get<int64_t>();
    s.group = r.get<int32_t>();
    s.index = r.get<int32_t>();
    s.task = r.get_str();
    s.prompt = r.get_vec<int32_t>();
    s.response = r.get_vec<int32_t>();
    s.sampler_logp = r.get_vec<double>();
    s.finish = r.get_str();
    s.reward = r.get<double>();
    s.verdict = Verdict(r.get<int32_t>());
    s.discarded = r.get<uint8_t>() != 0;
    s.advantage = r.get<double>();
    s.pass_rate = r.get<double>();
    s.behaviour_logp = r.get_vec<double>();
    s.current_logp = r.get_vec<double>();
    out.push_back(std::move(s));
  }
  TEMPER_CHECK(r.done(), "unpack_samples: trailing bytes after ", n, " samples");
  return out;
}

TrajectoryBatch trajectory_batch(const std::vector<RlSample>& samples, int64_t step, const std::string& algorithm,
                                 const std::map<std::string, double>& metrics, bool with_pass_rate) {
  TrajectoryBatch tb;
  tb.step = step;
  tb.algorithm = algorithm;
  tb.metrics = metrics;
  for (const RlSample& s : samples) {
    tb.prompt_index.push_back(s.prompt_index);
    tb.group.push_back(s.group);
    tb.task.push_back(s.task);
    tb.prompt_tokens.push_back(s.prompt);
    tb.response_tokens.push_back(s.response);
    const auto& behaviour = s.behaviour_logp.size() == s.response.size() ? s.behaviour_logp : s.sampler_logp;
    tb.behaviour_logp.push_back(to_float(behaviour));
    // untrained samples (empty responses, nothing to update): the behaviour log-probs
    tb.current_logp.push_back(to_float(s.current_logp.size() == s.response.size() ? s.current_logp : behaviour));
    tb.reward.push_back(s.reward);
    tb.verdict.push_back(s.verdict);
    tb.discarded.push_back(s.discarded);
    tb.advantage.push_back(s.advantage);
    tb.finish_reason.push_back(s.finish);
    if (with_pass_rate) tb.pass_rate.push_back(s.pass_rate);
  }
  return tb;
}

}  // namespace temper
