// The input deck: an INI file read against the schema (schema.h), plus
// "--section.key=value" overrides. Every key has a value (its default unless
// the file or an override sets it); values are checked for type and range
// when the deck is read, so a Deck that exists is valid.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "deck/schema.h"

namespace temper {

// The text of a deck file; missing, unreadable and directory paths are errors naming the path.
std::string read_deck_file(const std::string& path);

class Deck {
 public:
  enum class Origin { Default, File, Override };

  // Reads `path` (missing, unreadable or empty files are errors), then applies
  // the overrides in order (a later one wins). Precedence: override > file > default.
  static Deck load(const std::string& path, const std::vector<std::string>& overrides = {});
  // Parses deck text; `source_name` is used in error messages ("name:line: ...").
  static Deck parse(const std::string& text, const std::string& source_name,
                    const std::vector<std::string>& overrides = {});
  // Every key at its default, then the overrides (for tests and tools).
  static Deck defaults(const std::vector<std::string>& overrides = {});

  // key = "section.key". An undeclared key, or a getter that does not match
  // the key's type, is a programming error and throws.
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::string get_string(const std::string& key) const;  // any type: its canonical text
  std::vector<std::string> get_list(const std::string& key) const;  // list or int-list
  std::vector<int64_t> get_int_list(const std::string& key) const;

  bool is_default(const std::string& key) const;
  Origin origin(const std::string& key) const;
  // Where a value came from, for messages: "default", "run.deck:12" or
  // "override --sft.lr=1e-4".
  std::string where(const std::string& key) const;

  // Every key with its resolved value, INI by section, each line commented
  // with where the value came from. parse(resolved_text()) gives the same values.
  std::string resolved_text() const;
  std::string source() const { return source_; }  // file path, or "<defaults>"

 private:
  struct Value {
    std::string text;  // canonical text (what resolved_text writes)
    int64_t i = 0;
    double f = 0;
    bool b = false;
    std::vector<std::string> list;
    std::vector<int64_t> ints;
    Origin origin = Origin::Default;
    int line = 0;          // File: line number
    std::string override;  // Override: the argument as given
    std::string note;      // Default: how a derived value was obtained
  };
  Deck() = default;
  // Typed value of `raw` for key `spec`; errors start with `context`.
  static Value convert(const KeySpec& spec, const std::string& raw, const std::string& context);
  static Deck build(const std::string* text, const std::string& source_name,
                    const std::vector<std::string>& overrides);
  void apply_overrides(const std::vector<std::string>& overrides);
  void resolve_defaults();
  void check_consistency();
  const Value& value(const std::string& key, KeyType expected, const char* getter) const;
  const Value& value(const std::string& key) const;
  Value& mutable_value(const std::string& key);

  std::string source_;
  std::vector<Value> values_;  // parallel to deck_schema()
};

// One curriculum stage of SFT (from sft.stage_* or, without stages, from
// data.train_files / data.seq_len / sft.steps).
struct SftStage {
  std::vector<std::string> files;
  int64_t seq_len = 0;
  int64_t steps = 0;
};
std::vector<SftStage> sft_stages(const Deck& deck);

// rl.task_mix as (task, weight) pairs, weights as written (not normalised).
std::vector<std::pair<std::string, double>> rl_task_mix(const Deck& deck);
// rl.filter_bands as task -> (low, high) pass-rate bounds.
std::map<std::string, std::pair<double, double>> rl_filter_bands(const Deck& deck);

// The command line: `temper [--help] [--version] DECK [--section.key=value ...]`
// or `temper SUBCOMMAND args...` when argv[1] is one of known_subcommands().
struct CommandLine {
  bool help = false;
  bool version = false;
  std::string deck_path;
  std::vector<std::string> overrides;  // "--section.key=value", checked by Deck
  std::string subcommand;
  std::vector<std::string> args;  // subcommand arguments, untouched
};
const std::vector<std::string>& known_subcommands();
CommandLine parse_command_line(int argc, char** argv);
CommandLine parse_command_line(const std::vector<std::string>& args);  // without argv[0]
std::string usage_text();

}  // namespace temper
