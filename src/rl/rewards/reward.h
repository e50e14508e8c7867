// Verifiable rewards for the RL phase: one scoring function per task family
// (math answers, IFEval-style instruction constraints, code run against tests in
// a sandbox). All are device-independent, pure C++, and never evaluate model text
// in-process; only the code reward runs it, in a child process under limits.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace temper {

// Unparsable responses are discarded from the gradient (not scored 0).
enum class Verdict { Correct, Wrong, Unparsable };
const char* verdict_name(Verdict v);  // "correct" | "wrong" | "unparsable"

struct RewardResult {
  double reward = 0;
  Verdict verdict = Verdict::Wrong;
  std::string detail;  // human-readable reason (extracted answer, failed constraint, ...)
};

// Removes a leading <think>...</think> block (and, for chat templates that put
// "<think>" in the prompt, everything up to a "</think>" that has no opening tag).
// Returns nullopt when a <think> block is never closed.
std::optional<std::string> strip_think(const std::string& response);

// ---- math ------------------------------------------------------------------
// What to take as the answer when there is neither a \boxed{} nor a prefix.
enum class MathFallback {
  None,    // no answer (Unparsable): the default for RL
  Latex,   // Math-Verify's "final answer is"/"answer:" anchors, then the last $...$ / \[...\] span
  Number,  // the anchors, then the last plain number ("1,234.5", "2,74")
  Both,    // the anchors, then the last math span, else the last number
};

struct MathOptions {
  bool use_boxed = true;  // take the last \boxed{...} (with the boxes listed just before it)
  // Fallback markers, tried when no \boxed is found: the answer is the rest of the
  // line after the LAST occurrence of any of them (case-insensitive), e.g. "####", "Answer:".
  std::vector<std::string> answer_prefixes;
  MathFallback fallback = MathFallback::None;
  int float_rounding = 6;   // a decimal answer matches when equal after rounding to this many places
  bool set_relation = true; // "-2 \le x \le 7" and "[-2, 7]" compare equal whichever is the reference
};

// ref: {"answer": "..."} (string or number, or an array of acceptable answers), or
// the answer itself as a json string/number. Reward 1 when mathematically equal
// (docs/rewards.md lists the rules).
RewardResult math_reward(const std::string& response, const nlohmann::json& ref,
                         const MathOptions& opt = {});

// Exposed for tests and for the eval phase.
std::optional<std::string> extract_math_answer(const std::string& text, const MathOptions& opt = {});
std::string normalize_math_answer(const std::string& answer);  // canonical text of the parsed answer
struct MathJudgement {
  bool equal = false;
  bool undecided = false;  // neither proved equal nor unequal (unparsable side, no valid evaluation point)
  std::string why;
};
// gold is the reference: the relation is not symmetric for "x = 5" against "5".
MathJudgement judge_math_answers(const std::string& gold, const std::string& pred, const MathOptions& opt = {});
bool math_answers_equal(const std::string& gold, const std::string& pred);

// ---- instruction following ---------------------------------------------------
// constraints: one object or an array of objects, each with a "type" (see
// docs/rewards.md). Reward 1 only if every constraint holds. loose = IFEval's loose
// mode (also accept the response with '*' removed and/or first/last line dropped).
// Throws temper::Error for an unknown type or a missing/ill-typed key.
RewardResult instruction_reward(const std::string& response, const nlohmann::json& constraints,
                                bool loose = false);
// One constraint against one response, as the official evaluation scores an instruction
// (strict, or loose over its eight variants). Throws temper::Error for a bad constraint.
bool ifeval_instruction_followed(const std::string& response, const nlohmann::json& constraint, bool loose);

// ---- code ------------------------------------------------------------------
struct CodeTest {
  std::string input;
  std::string expected_output;
};

// Python test code run after the program in the same process (HumanEval's
// `test` + `check(entry_point)`, MBPP's `test_list` asserts): the program is
// `prefix` + the extracted code, then `setup` runs, then each test in turn, all in
// the program's namespace; a test passes when it raises nothing (see code_harness.h).
struct CodeTestCode {
  std::string prefix;               // prepended to the program (HumanEval: the prompt)
  std::string setup;                // after the program, before the tests (MBPP test_setup_code)
  std::vector<std::string> tests;   // one pass/fail each
};

struct CodeJob {
  std::string response;
  std::vector<CodeTest> tests;            // stdin/stdout pairs, or (when non-empty)
  std::optional<CodeTestCode> test_code;  // test code run by rl.code_command as Python
};

// Parses ref["tests"] (or ref itself when it is an array): [{"input":..,"expected_output":..}]
// ("output" is accepted for "expected_output").
std::vector<CodeTest> code_tests_from_json(const nlohmann::json& ref);
// Parses ref["test_code"]: {"prefix": str?, "setup": str?, "tests": [str, ...]} (non-empty).
CodeTestCode code_test_code_from_json(const nlohmann::json& ref);

struct SandboxOptions {
  // How to run the extracted program. "{src}" is replaced by the source file's
  // path; when absent from run_command the path is appended. The first word is
  // looked up on PATH when it has no '/'.
  std::vector<std::string> run_command = {"python3"};
  std::vector<std::string> compile_command;  // optional, e.g. {"g++","-O2","-o","prog","{src}"}
  std::string source_name = "main.py";
  std::vector<std::string> fence_tags = {"python", "py", "python3"};  // plus untagged ```

  double wall_timeout_s = 5.0;    // per test run (also per compile); SIGKILL of the tree
  int cpu_seconds = 5;            // RLIMIT_CPU
  long long memory_bytes = 1LL << 30;      // the whole process tree (cgroup, else rlimits; code_sandbox.h)
  long long file_size_bytes = 16LL << 20;  // RLIMIT_FSIZE
  long long tmp_bytes = 64LL << 20;        // size of each of the private /tmp, /dev/shm and /work
  int max_processes = 32;         // the whole process tree
  int max_open_files = 64;        // RLIMIT_NOFILE
  size_t output_cap_bytes = 1 << 20;  // per stream; excess is truncated and the run fails
  bool allow_unisolated = false;  // where namespaces are unavailable, run anyway (warns; rl.code_unisolated)
  bool force_unisolated = false;  // never isolate (tests of that mode; needs allow_unisolated)
  std::vector<std::string> ro_paths;  // more host paths shown read-only (rl.code_ro_paths)
  std::string tmp_root;           // parent of the jobs' host folders; empty = $TMPDIR or /tmp

  int workers = 4;                // concurrent jobs (or batches)
  // Test-code jobs scored by one sandboxed harness run, each in a process of its
  // own forked from it (code_harness.h); wall_timeout_s applies per job.
  int test_code_batch = 1;
  bool all_or_nothing = false;    // reward 1/0 instead of the fraction of tests passed
};

// Scores every job (extract the last fenced program, run it on each test) with at
// most opt.workers jobs in flight. Results are in job order. Throws temper::Error
// only for configuration problems (interpreter not found, no temp dir).
std::vector<RewardResult> code_rewards(const std::vector<CodeJob>& jobs, const SandboxOptions& opt);

// What code_rewards checks before it runs anything: the commands are set and found, the
// deadlines positive, and programs can be isolated here (else it throws, unless
// opt.allow_unisolated, when it warns once). The phases call it at start when their
// prompts hold code tasks, so a run that cannot score code stops before any work.
void check_code_rewards_can_run(const SandboxOptions& opt);

// The last fenced block whose info string is in `tags` or empty; nullopt if none.
std::optional<std::string> extract_code_block(const std::string& text,
                                              const std::vector<std::string>& tags);

}  // namespace temper
