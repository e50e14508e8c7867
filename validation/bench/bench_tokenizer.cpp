// Encode throughput of the BPE tokenizer (Qwen3, Llama-3) on one core, next to
// the Hugging Face Rust encoder's figure recorded in
// tests/fixtures/hf/tokenizer_ids.json (one encode call per line).
// Usage: bench_tokenizer [REPO_ROOT] [MB]   (defaults: . and 10)
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/bpe_tokenizer.h"

using namespace temper;

namespace {

// ~`bytes` of mixed text: prose from random syllables (so words vary), code,
// numbers, CJK, emoji, accents and whitespace runs, in lines of varied length.
std::string mixed_text(size_t bytes) {
  std::mt19937 rng(1234);
  const std::vector<std::string> syll = {"ka", "the", "ro", "min", "ta", "ex", "pre", "ing", "tion", "al", "so",
                                         "ver", "qu", "ent", "lo", "ar", "is", "un", "der", "com"};
  const std::vector<std::string> extra = {
      "int main() { return 0; }", "for (auto& x : v) x *= 2;", "def f(x):\n    return x ** 2",
      "日本語のテキストと中文文本", "Ελληνικά και русский", "😀🎉👍🏽", "naïve café résumé", "3.14159", "1234567",
      "https://example.com/a?b=c", "\\frac{1}{2}", "   ", "\t", "!!!???", "I'm", "they'll", "WON'T"};
  std::string out;
  out.reserve(bytes + 256);
  while (out.size() < bytes) {
    int words = 3 + static_cast<int>(rng() % 25);
    for (int w = 0; w < words; ++w) {
      if (rng() % 6 == 0) {
        out += extra[rng() % extra.size()];
      } else {
        int n = 1 + static_cast<int>(rng() % 3);
        std::string word;
        for (int k = 0; k < n; ++k) word += syll[rng() % syll.size()];
        if (rng() % 7 == 0) word[0] = static_cast<char>(word[0] - 32);
        out += word;
      }
      out += rng() % 10 == 0 ? ", " : " ";
    }
    out += ".\n";
  }
  return out;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  size_t a = 0;
  for (size_t b; (b = text.find('\n', a)) != std::string::npos; a = b + 1) lines.push_back(text.substr(a, b - a));
  lines.push_back(text.substr(a));
  return lines;
}

// MB/s of one encode call per line (the same shape as the HF figure).
double per_line_mbps(const BpeTokenizer& tok, const std::vector<std::string>& lines, size_t bytes, size_t& tokens) {
  std::vector<int32_t> ids;
  tokens = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (const auto& l : lines) {
    ids.clear();
    tok.encode_into(l, false, ids);
    tokens += ids.size();
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return static_cast<double>(bytes) / s / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string root = argc > 1 ? argv[1] : ".";
  const double mb = argc > 2 ? std::stod(argv[2]) : 10.0;
  nlohmann::json fix;
  std::ifstream fin(root + "/tests/fixtures/hf/tokenizer_ids.json");
  if (!fin) {
    std::fprintf(stderr, "bench_tokenizer: run from the repository root or pass it: %s REPO_ROOT [MB]\n", argv[0]);
    return 1;
  }
  fin >> fix;
  const std::string mixed = mixed_text(static_cast<size_t>(mb * 1e6));
  const std::vector<std::string> mixed_lines = lines_of(mixed);
  // The corpus HF was timed on: the fixture strings joined by newlines, repeated to ~2 MB.
  std::string joined;
  for (size_t i = 0; i < fix["strings"].size(); ++i) joined += (i ? "\n" : "") + fix["strings"][i].get<std::string>();
  std::string hf_corpus;
  for (size_t k = 0; k < 2000000 / joined.size(); ++k) hf_corpus += joined + "\n";
  const std::vector<std::string> hf_lines = lines_of(hf_corpus);

  std::printf("encode throughput, one core, one call per line (MB/s = 1e6 bytes/s)\n");
  std::printf("%-8s %-26s %8s %10s %9s %9s %7s\n", "tok", "corpus", "MB", "tokens", "temper", "HF-rust", "ratio");
  for (const char* name : {"qwen3", "llama3"}) {
    const std::string path = root + "/.cache/hf-tokenizers/" + name + "/tokenizer.json";
    if (!std::ifstream(path)) {
      std::printf("%-8s (missing %s: run jobscripts/fetch_tokenizers.sh)\n", name, path.c_str());
      continue;
    }
    auto t0 = std::chrono::steady_clock::now();
    auto tok = make_bpe_tokenizer(path);
    double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double hf = fix["tokenizers"][name]["hf_encode_MBps_one_call_per_line"].get<double>();
    size_t tokens = 0;
    double m1 = per_line_mbps(*tok, hf_lines, hf_corpus.size(), tokens);
    std::printf("%-8s %-26s %8.2f %10zu %9.2f %9.2f %6.1fx\n", name, "HF fixture strings", hf_corpus.size() / 1e6,
                tokens, m1, hf, m1 / hf);
    double m2 = per_line_mbps(*tok, mixed_lines, mixed.size(), tokens);
    std::printf("%-8s %-26s %8.2f %10zu %9.2f %9s %7s\n", name, "mixed text (generated)", mixed.size() / 1e6, tokens,
                m2, "-", "-");
    auto fresh = make_bpe_tokenizer(path);  // cold cache, whole text in one call
    std::vector<int32_t> ids;
    auto t1 = std::chrono::steady_clock::now();
    fresh->encode_into(mixed, false, ids);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    std::printf("%-8s %-26s %8.2f %10zu %9.2f %9s %7s   (load %.2f s)\n", name, "mixed, one call, cold cache",
                mixed.size() / 1e6, ids.size(), mixed.size() / s / 1e6, "-", "-", load_s);
  }
  return 0;
}
