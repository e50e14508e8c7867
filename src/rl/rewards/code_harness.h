// The Python harness behind test-code rewards (HumanEval, MBPP): one sandboxed run
// per job executes the program, the setup and every test in one interpreter and
// reports a pass/fail line per test.
//
// Files in the job's work dir: solution.py (prefix + extracted code), tests.json
// (setup and tests) and harness.py. The harness reads a random nonce from stdin,
// removes tests.json and itself, imports the program as module "solution" (so a
// `__main__` block does not run), runs the setup, then each test in the module's
// namespace, catching every exception (SystemExit included). Results go to a
// private duplicate of stdout as lines "<nonce> test <i> ok|fail <reason>", so the
// program can neither print a result nor end the run early and pass: a test passes
// only when its own "ok" line with the secret nonce appears.
#pragma once
#include <string>
#include <vector>

#include "rl/rewards/reward.h"

namespace temper {

struct HarnessOutcome {
  std::vector<bool> passed;   // per test
  std::string program_error;  // the program or the setup raised: "NameError: ..."
  std::vector<std::string> failure;  // per test: "" or a short reason
  bool done = false;          // the harness reached its end
};

// The harness program (Python 3).
const std::string& code_harness_source();

// tests.json for one job.
std::string code_harness_spec(const CodeTestCode& tc);

// The program file's text: prefix + code (a newline between when prefix lacks one).
std::string code_harness_program(const CodeTestCode& tc, const std::string& code);

// Reads the result lines that carry `nonce` from the run's stdout.
HarnessOutcome parse_code_harness_output(const std::string& out, const std::string& nonce, size_t n_tests);

// A fresh random nonce (32 hex digits).
std::string code_harness_nonce();

}  // namespace temper
