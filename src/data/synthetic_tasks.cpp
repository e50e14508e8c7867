// Generators and checker for the synthetic reasoning tasks (see synthetic_tasks.h).
#include "data/synthetic_tasks.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <set>
#include <sstream>

#include "core/error.h"
#include "data/jsonl.h"

namespace temper {

namespace {

const std::vector<std::string> kTasks = {"arith", "sort", "count", "word", "if_upper", "if_words"};
const std::vector<std::string> kWords = {
    "cat",   "dog",    "apple", "banana", "strawberry", "letter", "coffee", "bottle", "paper",  "river",
    "mirror", "pepper", "yellow", "garden", "balloon", "rabbit", "summer", "tomato",  "window", "kitten",
    "sun",   "moon",   "tree",  "house",  "bread",  "cookie", "pizza",  "hello",  "cherry", "lemon"};
const std::vector<std::string> kNames = {"Tom", "Ana", "Sam", "Lea", "Ben", "Mia", "Max", "Ivy"};
const std::vector<std::string> kItems = {"apple", "pen", "book", "card", "ball", "shell", "coin", "egg"};
const std::vector<std::string> kNumberWords = {
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty"};
const char* kSystem = "Think briefly, then give the final answer in \\boxed{}.";

int uniform_int(Rng& rng, int lo, int hi) { return lo + static_cast<int>(rng.below(hi - lo + 1)); }
template <typename T> const T& pick(Rng& rng, const std::vector<T>& v) { return v[rng.below(v.size())]; }
int random_with_digits(Rng& rng, int digits) {
  int lo = 1;
  for (int i = 1; i < digits; ++i) lo *= 10;
  return uniform_int(rng, lo, lo * 10 - 1);
}
// A listed word, or (half the time) a made-up one of alternating consonants
// and vowels, so the letter tasks have far more prompts than any eval set.
std::string some_word(Rng& rng) {
  if (rng.below(2) == 0) return pick(rng, kWords);
  static const char* consonants = "bcdfghjklmnprstvwz";
  static const char* vowels = "aeiou";
  const int len = uniform_int(rng, 3, 8);
  std::string w;
  const bool vowel_first = rng.below(2) == 0;
  for (int i = 0; i < len; ++i)
    w += ((i % 2 == 0) == vowel_first) ? vowels[rng.below(5)] : consonants[rng.below(18)];
  return w;
}
std::string boxed(const std::string& s) { return "\\boxed{" + s + "}"; }
std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// "58+67: 8+7=15 c1, 5+6+1=12 c1, carry 1. \boxed{125}"
void make_arith(Rng& rng, SyntheticExample& ex) {
  const int a = random_with_digits(rng, uniform_int(rng, 1, 3));
  const int b = random_with_digits(rng, uniform_int(rng, 1, 3));
  std::ostringstream os;
  os << a << "+" << b << ":";
  int x = a, y = b, carry = 0;
  bool first = true;
  while (x > 0 || y > 0 || first) {
    const int da = x % 10, db = y % 10, s = da + db + carry;
    os << (first ? " " : ", ") << da << "+" << db;
    if (carry) os << "+1";
    os << "=" << s;
    carry = s >= 10 ? 1 : 0;
    if (carry) os << " c1";
    x /= 10;
    y /= 10;
    first = false;
  }
  if (carry) os << ", carry 1";
  ex.answer = std::to_string(a + b);
  os << ". " << boxed(ex.answer);
  ex.prompt.push_back({"user", "Compute " + std::to_string(a) + "+" + std::to_string(b) + "."});
  ex.response = os.str();
}

// Compare two numbers digit by digit, or sort three or four.
void make_sort(Rng& rng, SyntheticExample& ex) {
  if (rng.below(2) == 0) {
    const int digits = uniform_int(rng, 2, 3);
    int a = random_with_digits(rng, digits), b = random_with_digits(rng, digits);
    while (b == a) b = random_with_digits(rng, digits);
    const std::string sa = std::to_string(a), sb = std::to_string(b);
    std::ostringstream os;
    os << sa << " vs " << sb << ":";
    for (size_t i = 0; i < sa.size(); ++i) {
      const char rel = sa[i] == sb[i] ? '=' : (sa[i] > sb[i] ? '>' : '<');
      os << (i ? ", " : " ") << sa[i] << rel << sb[i];
      if (rel != '=') break;
    }
    ex.answer = std::to_string(std::max(a, b));
    os << ". " << boxed(ex.answer);
    ex.prompt.push_back({"user", "Which is larger, " + sa + " or " + sb + "?"});
    ex.response = os.str();
    return;
  }
  const int n = uniform_int(rng, 3, 4);
  std::vector<int> v;
  while (static_cast<int>(v.size()) < n) {
    const int x = uniform_int(rng, 1, 99);
    if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x);
  }
  std::string list;
  for (int i = 0; i < n; ++i) list += (i ? ", " : "") + std::to_string(v[i]);
  std::vector<int> s = v;
  std::sort(s.begin(), s.end());
  std::string sorted, steps;
  for (int i = 0; i < n; ++i) {
    sorted += (i ? ", " : "") + std::to_string(s[i]);
    steps += (i ? (i + 1 == n ? ", last " : ", then ") : "min ") + std::to_string(s[i]);
  }
  ex.answer = sorted;
  ex.prompt.push_back({"user", "Sort ascending: " + list + "."});
  ex.response = steps + ". " + boxed(sorted);
}

// "s t r=1 a w b e r=2 r=3 y. \boxed{3}"
void make_count(Rng& rng, SyntheticExample& ex) {
  const std::string w = some_word(rng);
  const char letter = rng.below(5) == 0 ? static_cast<char>('a' + rng.below(26)) : w[rng.below(w.size())];
  std::ostringstream os;
  int count = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    os << (i ? " " : "") << w[i];
    if (w[i] == letter) os << "=" << ++count;
  }
  ex.answer = std::to_string(count);
  os << ". " << boxed(ex.answer);
  ex.prompt.push_back({"user", std::string("How many '") + letter + "' in '" + w + "'?"});
  ex.response = os.str();
}

void make_word(Rng& rng, SyntheticExample& ex) {
  const std::string& name = pick(rng, kNames);
  const std::string& item = pick(rng, kItems);
  std::string q, work;
  int result = 0;
  switch (rng.below(3)) {
    case 0: {
      const int a = uniform_int(rng, 2, 30), b = uniform_int(rng, 2, 30);
      q = cat(name, " has ", a, " ", item, "s and gets ", b, " more. How many ", item, "s now?");
      result = a + b;
      work = cat("Add: ", a, "+", b, "=", result, ".");
      break;
    }
    case 1: {
      const int a = uniform_int(rng, 5, 40), b = uniform_int(rng, 1, a - 1);
      q = cat(name, " has ", a, " ", item, "s and gives away ", b, ". How many are left?");
      result = a - b;
      work = cat("Subtract: ", a, "-", b, "=", result, ".");
      break;
    }
    default: {
      const int a = uniform_int(rng, 2, 9), b = uniform_int(rng, 2, 9);
      q = cat(name, " has ", a, " bags with ", b, " ", item, "s each. How many ", item, "s?");
      result = a * b;
      work = cat("Multiply: ", a, "*", b, "=", result, ".");
    }
  }
  ex.answer = std::to_string(result);
  ex.prompt.push_back({"user", q});
  ex.response = work + " " + boxed(ex.answer);
}

// "CAT REVERSED: T-A-C. \boxed{TAC}"
void make_if_upper(Rng& rng, SyntheticExample& ex) {
  const std::string w = some_word(rng);
  std::string rev(w.rbegin(), w.rend());
  std::string dashed;
  for (size_t i = 0; i < rev.size(); ++i) dashed += (i ? "-" : "") + std::string(1, rev[i]);
  ex.answer = upper(rev);
  ex.constraints = {{"case", "upper"}};
  ex.prompt.push_back({"user", "Write '" + w + "' backwards. Answer in uppercase letters only."});
  ex.response = upper(w) + " REVERSED: " + upper(dashed) + ". " + boxed(ex.answer);
}

// "Up from seven, 3 words. \boxed{seven eight nine}" (or down, by ones or twos)
void make_if_words(Rng& rng, SyntheticExample& ex) {
  const int n = uniform_int(rng, 2, 5);
  const int step = uniform_int(rng, 1, 2);
  const bool up = rng.below(2) == 0;
  const int span = (n - 1) * step;
  const int start = up ? uniform_int(rng, 0, 20 - span) : uniform_int(rng, span, 20);
  std::string words;
  for (int i = 0; i < n; ++i) words += (i ? " " : "") + kNumberWords[start + (up ? i : -i) * step];
  const std::string dir = up ? "up" : "down";
  const std::string by = step == 1 ? "" : " by twos";
  ex.answer = words;
  ex.constraints = {{"words", n}};
  ex.prompt.push_back(
      {"user", cat("Count ", dir, by, " from ", kNumberWords[start], ". Answer in exactly ", n, " words.")});
  ex.response = cat(up ? "Up" : "Down", by, " from ", kNumberWords[start], ", ", n, " words. ", boxed(words));
}

std::string trim_collapse(const std::string& s) {
  std::string out;
  bool space = false;
  for (char c : s) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      space = !out.empty();
    } else {
      if (space) out += ' ';
      out += c;
      space = false;
    }
  }
  return out;
}

std::string strip_spaces(const std::string& s) {
  std::string out;
  for (char c : s)
    if (!std::isspace(static_cast<unsigned char>(c))) out += c;
  return out;
}

void erase_all(std::string& s, const std::string& what) {
  for (size_t p; (p = s.find(what)) != std::string::npos;) s.erase(p, what.size());
}

int count_words(const std::string& s) {
  std::istringstream is(s);
  int n = 0;
  for (std::string w; is >> w;) ++n;
  return n;
}

}  // namespace

const std::vector<std::string>& synthetic_task_names() { return kTasks; }

SyntheticExample make_synthetic_example(const std::string& task, Rng& rng) {
  SyntheticExample ex;
  ex.task = task;
  if (rng.below(4) == 0) ex.prompt.push_back({"system", kSystem});
  if (task == "arith") make_arith(rng, ex);
  else if (task == "sort") make_sort(rng, ex);
  else if (task == "count") make_count(rng, ex);
  else if (task == "word") make_word(rng, ex);
  else if (task == "if_upper") make_if_upper(rng, ex);
  else if (task == "if_words") make_if_words(rng, ex);
  else fail("unknown synthetic task '", task, "' (expected arith, sort, count, word, if_upper or if_words)");
  return ex;
}

nlohmann::json prompt_record(const SyntheticExample& ex) {
  Conversation c;
  c.messages = ex.prompt;
  c.extra = {{"task", ex.task}, {"answer", ex.answer}};
  if (!ex.constraints.is_null()) c.extra["constraints"] = ex.constraints;
  return conversation_to_json(c);
}

nlohmann::json sft_record(const SyntheticExample& ex) {
  nlohmann::json rec = prompt_record(ex);
  rec["messages"].push_back({{"role", "assistant"}, {"content", ex.response}});
  return rec;
}

void write_synthetic_datasets(const std::string& dir, uint64_t seed, int n_train, int n_eval) {
  TEMPER_CHECK(n_train >= 0 && n_eval >= 0, "synthetic data: negative example counts (", n_train, ", ", n_eval, ")");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail(dir, ": cannot create the synthetic data folder (", ec.message(), ")");

  std::set<std::string> eval_prompts;
  auto key = [](const SyntheticExample& ex) { return ex.prompt.back().content; };
  auto generate = [&](uint64_t stream, int n, bool held_out) {
    Rng rng(mix64(seed, stream));
    std::vector<SyntheticExample> out;
    for (int i = 0; i < n; ++i) {
      const std::string& task = kTasks[i % kTasks.size()];
      SyntheticExample ex = make_synthetic_example(task, rng);
      // Training never sees an eval prompt; small task spaces give up after a while.
      for (int tries = 0; !held_out && eval_prompts.count(key(ex)) && tries < 200; ++tries)
        ex = make_synthetic_example(task, rng);
      if (held_out) eval_prompts.insert(key(ex));
      out.push_back(std::move(ex));
    }
    return out;
  };
  auto write = [&](const std::string& name, const std::vector<SyntheticExample>& exs, bool with_response) {
    std::vector<nlohmann::json> recs;
    for (const SyntheticExample& ex : exs) recs.push_back(with_response ? sft_record(ex) : prompt_record(ex));
    write_jsonl((std::filesystem::path(dir) / name).string(), recs);
  };
  const auto sft_eval = generate(1, n_eval, true);
  const auto rl_eval = generate(2, n_eval, true);
  const auto sft_train = generate(3, n_train, false);
  const auto rl_train = generate(4, n_train, false);
  write("sft_train.jsonl", sft_train, true);
  write("sft_eval.jsonl", sft_eval, true);
  write("rl_prompts.jsonl", rl_train, false);
  write("rl_eval.jsonl", rl_eval, false);
}

std::string last_boxed(const std::string& text, bool* found) {
  const std::string open = "\\boxed{";
  size_t pos = text.rfind(open);
  while (pos != std::string::npos) {
    int depth = 1;
    for (size_t i = pos + open.size(); i < text.size(); ++i) {
      if (text[i] == '{') ++depth;
      if (text[i] == '}' && --depth == 0) {
        if (found) *found = true;
        return text.substr(pos + open.size(), i - pos - open.size());
      }
    }
    // Unclosed: look for an earlier, complete one.
    pos = pos == 0 ? std::string::npos : text.rfind(open, pos - 1);
  }
  if (found) *found = false;
  return "";
}

void check_synthetic_record(const nlohmann::json& rec, const std::string& where) {
  const auto task = rec.find("task");
  TEMPER_CHECK(task != rec.end() && task->is_string(), where, ": needs a string \"task\"");
  const std::string name = task->get<std::string>();
  TEMPER_CHECK(std::find(kTasks.begin(), kTasks.end(), name) != kTasks.end(), where, ": task '", name,
               "' is not a synthetic task (arith, sort, count, word, if_upper, if_words)");
  const auto answer = rec.find("answer");
  TEMPER_CHECK(answer != rec.end(), where, ": task '", name, "' needs an \"answer\"");
  TEMPER_CHECK(answer->is_string() && !answer->get<std::string>().empty(), where, ": \"answer\" of task '", name,
               "' must be a non-empty string, got ", answer->dump());
  const auto c = rec.find("constraints");
  if (c == rec.end() || c->is_null()) return;
  TEMPER_CHECK(c->is_object(), where, ": \"constraints\" must be an object, got ", c->dump());
  if (name == "if_words" && c->contains("words"))
    TEMPER_CHECK((*c)["words"].is_number_integer() && (*c)["words"].get<int64_t>() > 0, where,
                 ": constraints.words must be a positive integer, got ", (*c)["words"].dump());
}

bool check_answer(const std::string& task, const std::string& reference, const std::string& model_output,
                  const nlohmann::json& constraints) {
  bool found = false;
  const std::string got = last_boxed(model_output, &found);
  if (!found) return false;
  if (task == "arith" || task == "sort" || task == "count" || task == "word")
    return strip_spaces(got) == strip_spaces(reference);
  if (task == "if_upper") {
    if (trim_collapse(got) != trim_collapse(reference)) return false;
    std::string rest = model_output;
    for (const char* s : {"\\boxed", "<think>", "</think>", "<|im_end|>", "<|endoftext|>"}) erase_all(rest, s);
    return std::none_of(rest.begin(), rest.end(), [](char c) { return std::islower(static_cast<unsigned char>(c)); });
  }
  if (task == "if_words") {
    const int want = constraints.is_object() && constraints.contains("words") ? constraints["words"].get<int>()
                                                                              : count_words(reference);
    return count_words(got) == want && trim_collapse(got) == trim_collapse(reference);
  }
  fail("check_answer: unknown task '", task, "' (expected arith, sort, count, word, if_upper or if_words)");
}

}  // namespace temper
