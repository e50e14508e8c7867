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
    f.close();  // a full disk shows when the buffer is written, at the close
    TEMPER_CHECK(f.good(), "code sandbox: cannot write '", path, "'");
  }
  chmod(path.c_str(), 0644);  // readable by the (possibly unprivileged) program, not writable
}

// The program of a job: the last fenced block of the response after <think>; sets
// an Unparsable result and returns nullopt when there is none.
std::optional<std::string> job_program(const CodeJob& job, const SandboxOptions& opt, RewardResult* res) {
  res->verdict = Verdict::Unparsable;
  auto body = strip_think(job.response);
  if (!body) {
    res->detail = "unterminated <think> block";
    return std::nullopt;
  }
  auto program = extract_code_block(*body, opt.fence_tags);
  if (!program) res->detail = "no fenced code block";
  return program;
}

// A batch of test-code jobs (HumanEval, MBPP): one run of the Python harness, each
// job in its own forked process with the per-job deadline (code_harness.h).
void score_test_code_batch(const std::vector<const CodeJob*>& jobs, const std::vector<std::string>& code,
                           const SandboxOptions& opt, std::vector<RewardResult*> out) {
  std::vector<const CodeTestCode*> tcs;
  std::vector<std::string> programs;
  std::vector<size_t> n_tests;
  for (size_t j = 0; j < jobs.size(); ++j) {
    tcs.push_back(&*jobs[j]->test_code);
    programs.push_back(code_harness_program(*jobs[j]->test_code, code[j]));
    n_tests.push_back(jobs[j]->test_code->tests.size());
  }
  SandboxDir dir(opt.tmp_root);
  write_file(dir.work() + "/tests.json", code_harness_spec(tcs, programs, opt.wall_timeout_s));
  const std::string harness = dir.work() + "/harness.py";
  write_file(harness, code_harness_source());
  const std::string nonce = code_harness_nonce();
  SandboxLimits lim = limits_of(opt);
  lim.wall_timeout_s = double(jobs.size()) * (opt.wall_timeout_s + 0.5) + 5.0;  // the harness's own deadline
  auto cmd = build_command(opt.run_command, harness, true);
  ExecResult r = sandbox_exec(cmd, nonce + "\n", dir, lim);
  if (r.exec_failed) config_failure(cmd, r);
  const std::vector<HarnessOutcome> hs = parse_code_harness_output(r.out, nonce, n_tests);
  for (size_t j = 0; j < jobs.size(); ++j) {
    const HarnessOutcome& h = hs[j];
    size_t passed = 0;
    std::string first_failure;
    for (size_t t = 0; t < n_tests[j]; ++t) {
      if (h.passed[t]) {
        ++passed;
      } else if (first_failure.empty()) {
        std::string why = !h.program_error.empty() ? "program raised " + h.program_error
                          : !h.failure[t].empty()  ? h.failure[t]
                          : h.ended == "timeout"   ? cat("timeout after ", opt.wall_timeout_s, " s")
                          : !h.ended.empty()       ? "no result (the program ended: " + h.ended + ")"
                          : !r.ok()                ? "harness: " + r.describe() + " " + r.err.substr(0, 200)
                                                   : "no result";
        first_failure = cat("test ", t, ": ", why);
      }
    }
    const bool all = passed == n_tests[j];
    RewardResult& res = *out[j];
    res.verdict = all ? Verdict::Correct : Verdict::Wrong;
    res.reward = opt.all_or_nothing ? (all ? 1.0 : 0.0) : double(passed) / double(n_tests[j]);
    res.detail = cat("passed ", passed, "/", n_tests[j], first_failure.empty() ? "" : "; ", first_failure,
                     "; isolation: ", r.isolation, jobs.size() > 1 ? cat(" (batch of ", jobs.size(), ")") : "");
  }
}

// A job with stdin/stdout tests: one run per test.
RewardResult score_job(const CodeJob& job, const SandboxOptions& opt) {
  RewardResult res;
  auto program = job_program(job, opt, &res);
  if (!program) return res;
  TEMPER_CHECK(!job.tests.empty(), "code reward: a job has no tests (check the prompt record's \"tests\")");
  for (size_t t = 0; t < job.tests.size(); ++t)  // any silent program would pass an empty one
    TEMPER_CHECK(!canonical_output(job.tests[t].expected_output).empty(), "code reward: tests[", t,
                 "] has an empty expected output (any silent program would pass it)");
  res.verdict = Verdict::Wrong;
  SandboxDir dir(opt.tmp_root);
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

void check_code_rewards_can_run(const SandboxOptions& opt) {
  TEMPER_CHECK(!opt.run_command.empty(), "code sandbox: run_command is empty");
  TEMPER_CHECK(opt.wall_timeout_s > 0 && opt.cpu_seconds > 0, "code sandbox: timeouts must be positive");
  check_sandbox_isolation(limits_of(opt));  // refuses, or warns once, where programs cannot be isolated
  for (const auto* cmd : {&opt.run_command, &opt.compile_command})
    if (!cmd->empty() && sandbox_which((*cmd)[0]).empty())
      fail("code sandbox: interpreter/compiler '", (*cmd)[0], "' not found on PATH");
}

std::vector<RewardResult> code_rewards(const std::vector<CodeJob>& jobs, const SandboxOptions& opt) {
  check_code_rewards_can_run(opt);
  std::vector<RewardResult> results(jobs.size());
  // Work items: a stdin/stdout job alone, or up to test_code_batch test-code jobs
  // whose responses hold a program (the others are Unparsable right away).
  std::vector<std::vector<size_t>> items;
  std::vector<std::string> code(jobs.size());
  const size_t batch = size_t(std::max(1, opt.test_code_batch));
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (!jobs[i].test_code) {
      items.push_back({i});
      continue;
    }
    TEMPER_CHECK(!jobs[i].test_code->tests.empty(), "code reward: a job has no tests (check \"test_code\")");
    auto program = job_program(jobs[i], opt, &results[i]);
    if (!program) continue;
    code[i] = std::move(*program);
    if (items.empty() || !jobs[items.back()[0]].test_code || items.back().size() >= batch) items.emplace_back();
    items.back().push_back(i);
  }
  std::atomic<size_t> next{0};
  std::mutex err_mu;
  std::exception_ptr error;
  auto worker = [&] {
    for (size_t w; (w = next.fetch_add(1)) < items.size();) {
      try {
        const std::vector<size_t>& item = items[w];
        if (!jobs[item[0]].test_code) {
          results[item[0]] = score_job(jobs[item[0]], opt);
          continue;
        }
        std::vector<const CodeJob*> js;
        std::vector<std::string> cs;
        std::vector<RewardResult*> out;
        for (size_t i : item) {
          js.push_back(&jobs[i]);
          cs.push_back(code[i]);
          out.push_back(&results[i]);
        }
        score_test_code_batch(js, cs, opt, out);
      } catch (...) {
        std::lock_guard<std::mutex> lock(err_mu);
        if (!error) error = std::current_exception();
        next = items.size();  // stop handing out work
      }
    }
  };
  size_t n = std::min<size_t>(std::max(1, opt.workers), items.size());
  std::vector<std::thread> pool;
  for (size_t w = 0; w < n; ++w) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  return results;
}

}  // namespace temper
