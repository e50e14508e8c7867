// The Python harness behind test-code rewards (HumanEval, MBPP): one sandboxed
// interpreter scores a batch of jobs (SandboxOptions::test_code_batch), each in a
// process of its own forked from the harness, and reports a pass/fail line per test.
//
// In the work dir the sandbox sees tests.json (every job's program, setup and tests)
// and harness.py. The harness reads a random nonce from stdin and deletes both
// files. For each job in turn it forks a child that gets its own process group, its
// own directory job<j>/, stdin/stdout/stderr on /dev/null and, of the harness's file
// descriptors, only the write end of a fresh pipe. The child writes solution.py,
// imports it as module "solution" (so a `__main__` block does not run), runs the
// setup, then each test in the module's namespace, catching every exception
// (SystemExit included), and reports "<token> test <i> ok|fail <reason>" lines on
// the pipe, <token> being a fresh random token of that job. The harness waits at
// most the per-job deadline, then SIGKILLs the child's group and, when it is PID 1
// of a PID namespace, every other process left in it, and writes the job's
// accepted lines to stdout as "<nonce> job <j> test <i> ok|fail <reason>".
//
// So a job cannot touch another job's state, cannot end the run early and pass,
// and cannot print results: its prints go nowhere, and a test passes only when
// the harness saw that test's "ok" line with the job's token on the job's pipe.
#pragma once
#include <string>
#include <vector>

#include "rl/rewards/reward.h"

namespace temper {

struct HarnessOutcome {
  std::vector<bool> passed;          // per test
  std::vector<std::string> failure;  // per test: "" or a short reason
  std::string program_error;         // the program or the setup raised: "NameError: ..."
  std::string ended;                 // how the child ended early: "timeout", "exit 0", "signal 9", ...
  bool done = false;                 // the child reached its end
};

// The harness program (Python 3).
const std::string& code_harness_source();

// tests.json for a batch of jobs: {"timeout": s, "jobs": [{"program", "setup", "tests"}]}.
std::string code_harness_spec(const std::vector<const CodeTestCode*>& jobs, const std::vector<std::string>& programs,
                              double timeout_s);

// The program a job runs: prefix + code (a newline between when prefix lacks one).
std::string code_harness_program(const CodeTestCode& tc, const std::string& code);

// Reads the result lines that carry `nonce` from the harness's stdout; one outcome
// per job, n_tests[j] tests for job j.
std::vector<HarnessOutcome> parse_code_harness_output(const std::string& out, const std::string& nonce,
                                                      const std::vector<size_t>& n_tests);

// A fresh random nonce (32 hex digits).
std::string code_harness_nonce();

}  // namespace temper
