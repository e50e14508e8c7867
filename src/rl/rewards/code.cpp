// Code reward: extract the program from the response's last fenced block, run it
// on each stdin/stdout test in the sandbox (code_sandbox.cpp) and compare outputs,
// or run it with its test code through the Python harness (code_harness.h); a
// bounded pool of worker threads scores many jobs concurrently.
#include <algorithm>
#include <atomic>
#include <cctype>
#include <exception>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include <sys/stat.h>

#include "core/error.h"
#include "rl/rewards/code_harness.h"
#include "rl/rewards/code_sandbox.h"
#include "rl/rewards/reward.h"

namespace temper {
namespace {

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// Outputs compare equal after dropping trailing whitespace on every line and
// trailing blank lines.
std::string canonical_output(const std::string& s) {
  std::vector<std::string> lines;
  std::istringstream in(s);
  std::string line;
  while (std::getline(in, line)) {
    size_t e = line.find_last_not_of(" \t\r");
    lines.push_back(e == std::string::npos ? "" : line.substr(0, e + 1));
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  std::string out;
  for (auto& l : lines) out += l + "\n";
  return out;
}

std::string substitute(const std::string& word, const std::string& src) {
  std::string out = word;
  size_t p;
  while ((p = out.find("{src}")) != std::string::npos) out.replace(p, 5, src);
  return out;
}

std::vector<std::string> build_command(const std::vector<std::string>& tmpl, const std::string& src,
                                       bool append_src) {
  std::vector<std::string> argv;
  bool used = false;
  for (auto& w : tmpl) {
    used |= w.find("{src}") != std::string::npos;
    argv.push_back(substitute(w, src));
  }
  if (!used && append_src) argv.push_back(src);
  return argv;
}

SandboxLimits limits_of(const SandboxOptions& o) {
  SandboxLimits l;
  l.wall_timeout_s = o.wall_timeout_s;
  l.cpu_seconds = o.cpu_seconds;
  l.memory_bytes = o.memory_bytes;
  l.file_size_bytes = o.file_size_bytes;
  l.max_processes = o.max_processes;
  l.max_open_files = o.max_open_files;
  l.output_cap_bytes = o.output_cap_bytes;
  l.tmp_bytes = o.tmp_bytes;
  l.allow_unisolated = o.allow_unisolated;
  l.force_unisolated = o.force_unisolated;
  l.ro_paths = o.ro_paths;
  return l;
}

// A run that could not even start the configured interpreter is a deck problem,
// not the model's fault: stop the run with a message instead of scoring 0.
[[noreturn]] void config_failure(const std::vector<std::string>& cmd, const ExecResult& r) {
  fail("code sandbox: cannot run '", cmd.empty() ? "" : cmd[0], "': ", r.error,
       ". Check the sandbox run/compile command (the program runs with PATH=/usr/local/bin:/usr/bin:/bin",
       " and sees /usr and the system's bin/lib folders only: use a system interpreter or list its folder in",
       " rl.code_ro_paths)");
}

void write_file(const std::string& path, const std::string& text) {
  {
    std::ofstream f(path, std::ios::binary);
    f << text;
    TEMPER_CHECK(f.good(), "code sandbox: cannot write '", path, "'");
  }
  chmod(path.c_str(), 0644);  // readable by the (possibly unprivileged) program, not writable
}

// Test-code job (HumanEval, MBPP): one run of the Python harness scores every test.
RewardResult score_test_code(const CodeTestCode& tc, const std::string& code, const SandboxDir& dir,
                             const SandboxOptions& opt) {
  RewardResult res;
  write_file(dir.work() + "/solution.py", code_harness_program(tc, code));
  write_file(dir.work() + "/tests.json", code_harness_spec(tc));
  const std::string harness = dir.work() + "/harness.py";
  write_file(harness, code_harness_source());
  const std::string nonce = code_harness_nonce();
  auto cmd = build_command(opt.run_command, harness, true);
  ExecResult r = sandbox_exec(cmd, nonce + "\n", dir, limits_of(opt));
  if (r.exec_failed) config_failure(cmd, r);
  HarnessOutcome h = parse_code_harness_output(r.out, nonce, tc.tests.size());
  size_t passed = 0;
  std::string first_failure;
  for (size_t t = 0; t < tc.tests.size(); ++t) {
    if (h.passed[t]) {
      ++passed;
    } else if (first_failure.empty()) {
      std::string why = !h.program_error.empty() ? "program raised " + h.program_error
                        : !h.failure[t].empty()  ? h.failure[t]
                        : !r.ok()                ? r.describe()
                                                 : "no result (the program ended the run)";
      first_failure = cat("test ", t, ": ", why);
    }
  }
  const bool all = passed == tc.tests.size();
  res.verdict = all ? Verdict::Correct : Verdict::Wrong;
  res.reward = opt.all_or_nothing ? (all ? 1.0 : 0.0) : double(passed) / double(tc.tests.size());
  res.detail = cat("passed ", passed, "/", tc.tests.size(), first_failure.empty() ? "" : "; ", first_failure,
                   "; isolation: ", r.isolation);
  return res;
}

RewardResult score_job(const CodeJob& job, const SandboxOptions& opt) {
  RewardResult res;
  res.verdict = Verdict::Unparsable;
  auto body = strip_think(job.response);
  if (!body) {
    res.detail = "unterminated <think> block";
    return res;
  }
  auto program = extract_code_block(*body, opt.fence_tags);
  if (!program) {
    res.detail = "no fenced code block";
    return res;
  }
  TEMPER_CHECK(job.test_code ? !job.test_code->tests.empty() : !job.tests.empty(),
               "code reward: a job has no tests (check the prompt record's \"tests\" or \"test_code\")");
  res.verdict = Verdict::Wrong;
  for (size_t t = 0; t < job.tests.size(); ++t)  // any silent program would pass an empty one
    TEMPER_CHECK(!canonical_output(job.tests[t].expected_output).empty(), "code reward: tests[", t,
                 "] has an empty expected output (any silent program would pass it)");
  SandboxDir dir(opt.tmp_root);
  if (job.test_code) return score_test_code(*job.test_code, *program, dir, opt);
  const std::string src = dir.work() + "/" + opt.source_name;
  write_file(src, *program);
  SandboxLimits lim = limits_of(opt);
  std::string isolation;
  if (!opt.compile_command.empty()) {
    auto cmd = build_command(opt.compile_command, src, true);
    SandboxLimits compile = lim;
    compile.keep_work = true;  // its output stays in the job's folder for the runs
    ExecResult c = sandbox_exec(cmd, "", dir, compile);
    if (c.exec_failed) config_failure(cmd, c);
    if (!c.ok()) {
      res.detail = cat("compile failed (", c.describe(), "): ", c.err.substr(0, 300));
      return res;
    }
  }
  auto cmd = build_command(opt.run_command, src, opt.compile_command.empty());
  size_t passed = 0;
  std::string first_failure;
  for (size_t t = 0; t < job.tests.size(); ++t) {
    ExecResult r = sandbox_exec(cmd, job.tests[t].input, dir, lim);
    if (r.exec_failed) config_failure(cmd, r);
    isolation = r.isolation;
    bool ok = r.ok() && canonical_output(r.out) == canonical_output(job.tests[t].expected_output);
    if (ok) {
      ++passed;
    } else if (first_failure.empty()) {
      first_failure = cat("test ", t, ": ", r.ok() ? "wrong output" : r.describe());
    }
    if (!ok && opt.all_or_nothing) break;
  }
  bool all = passed == job.tests.size();
  res.verdict = all ? Verdict::Correct : Verdict::Wrong;
  res.reward = opt.all_or_nothing ? (all ? 1.0 : 0.0) : double(passed) / double(job.tests.size());
  res.detail = cat("passed ", passed, "/", job.tests.size(), first_failure.empty() ? "" : "; ", first_failure,
                   "; isolation: ", isolation);
  return res;
}

}  // namespace

std::optional<std::string> extract_code_block(const std::string& text, const std::vector<std::string>& tags) {
  std::optional<std::string> tagged, untagged;
  std::istringstream in(text);
  std::string line;
  bool inside = false;
  std::string tag, body;
  while (std::getline(in, line)) {
    std::string t = trim(line);
    if (!inside) {
      if (t.rfind("```", 0) == 0) {
        inside = true;
        tag = trim(t.substr(3));
        std::transform(tag.begin(), tag.end(), tag.begin(), [](unsigned char c) { return std::tolower(c); });
        body.clear();
      }
    } else if (t == "```") {
      inside = false;
      if (tag.empty()) untagged = body;
      else if (std::find(tags.begin(), tags.end(), tag) != tags.end()) tagged = body;
    } else {
      body += line + "\n";
    }
  }
  // An unclosed final fence (a truncated generation) does not count.
  if (tagged) return tagged;
  return untagged;
}

std::vector<CodeTest> code_tests_from_json(const nlohmann::json& ref) {
  const nlohmann::json& arr = ref.is_object() && ref.contains("tests") ? ref["tests"] : ref;
  TEMPER_CHECK(arr.is_array(), "code reward: \"tests\" must be an array of {\"input\",\"expected_output\"}");
  std::vector<CodeTest> tests;
  for (size_t i = 0; i < arr.size(); ++i) {
    const auto& t = arr[i];
    TEMPER_CHECK(t.is_object(), "code reward: tests[", i, "] is not an object");
    const char* out_key = t.contains("expected_output") ? "expected_output" : "output";
    TEMPER_CHECK(t.contains(out_key) && t[out_key].is_string(), "code reward: tests[", i,
                 "] needs a string \"expected_output\"");
    TEMPER_CHECK(!t.contains("input") || t["input"].is_string(), "code reward: tests[", i,
                 "].input must be a string");
    // Empty output would be matched by any program that prints nothing: refuse it here, at load.
    TEMPER_CHECK(!canonical_output(t[out_key].get<std::string>()).empty(), "code reward: tests[", i,
                 "] has an empty expected output (any silent program would pass it)");
    tests.push_back({t.value("input", ""), t[out_key].get<std::string>()});
  }
  return tests;
}

CodeTestCode code_test_code_from_json(const nlohmann::json& ref) {
  TEMPER_CHECK(ref.is_object() && ref.contains("test_code") && ref["test_code"].is_object(),
               "code reward: \"test_code\" must be an object {\"prefix\", \"setup\", \"tests\"}");
  const auto& j = ref["test_code"];
  CodeTestCode tc;
  for (const char* key : {"prefix", "setup"}) {
    if (!j.contains(key) || j[key].is_null()) continue;
    TEMPER_CHECK(j[key].is_string(), "code reward: test_code.", key, " must be a string");
    (std::string(key) == "prefix" ? tc.prefix : tc.setup) = j[key].get<std::string>();
  }
  TEMPER_CHECK(j.contains("tests") && j["tests"].is_array() && !j["tests"].empty(),
               "code reward: test_code.tests must be a non-empty array of Python snippets");
  for (size_t i = 0; i < j["tests"].size(); ++i) {
    TEMPER_CHECK(j["tests"][i].is_string(), "code reward: test_code.tests[", i, "] must be a string");
    tc.tests.push_back(j["tests"][i].get<std::string>());
  }
  return tc;
}

std::vector<RewardResult> code_rewards(const std::vector<CodeJob>& jobs, const SandboxOptions& opt) {
  TEMPER_CHECK(!opt.run_command.empty(), "code sandbox: run_command is empty");
  TEMPER_CHECK(opt.wall_timeout_s > 0 && opt.cpu_seconds > 0, "code sandbox: timeouts must be positive");
  check_sandbox_isolation(limits_of(opt));  // refuses, or warns once, where programs cannot be isolated
  for (const auto* cmd : {&opt.run_command, &opt.compile_command})
    if (!cmd->empty() && sandbox_which((*cmd)[0]).empty())
      fail("code sandbox: interpreter/compiler '", (*cmd)[0], "' not found on PATH");
  std::vector<RewardResult> results(jobs.size());
  std::atomic<size_t> next{0};
  std::mutex err_mu;
  std::exception_ptr error;
  auto worker = [&] {
    for (size_t i; (i = next.fetch_add(1)) < jobs.size();) {
      try {
        results[i] = score_job(jobs[i], opt);
      } catch (...) {
        std::lock_guard<std::mutex> lock(err_mu);
        if (!error) error = std::current_exception();
        next = jobs.size();  // stop handing out work
      }
    }
  };
  size_t n = std::min<size_t>(std::max(1, opt.workers), jobs.size());
  std::vector<std::thread> pool;
  for (size_t w = 0; w < n; ++w) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  return results;
}

}  // namespace temper
