// The Python harness of test-code rewards (see code_harness.h).
#include "rl/rewards/code_harness.h"

#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

namespace temper {

const std::string& code_harness_source() {
  static const std::string src = R"PY(import gc, json, os, select, signal, sys, time, types

CAP = 1 << 16  # bytes of result lines read from one job


def _child(job, token, wfd, index):
    try:
        os.setpgid(0, 0)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, wfd)
        os.closerange(wfd + 1, 1 << 16)
        chan = os.fdopen(wfd, "w", encoding="utf-8", errors="replace")
        sys.stdin = open(os.devnull)

        def report(line):
            chan.write(token + " " + line + "\n")
            chan.flush()

        d = "job%d" % index
        os.mkdir(d, 0o700)
        os.chdir(d)
        with open("solution.py", "w", encoding="utf-8", errors="replace") as f:
            f.write(job["program"])
        mod = types.ModuleType("solution")
        mod.__file__ = os.path.abspath("solution.py")
        sys.modules["solution"] = mod
        job_tests, setup, program = job["tests"], job.get("setup", ""), job["program"]
        del job

        def run(src, name):
            try:
                exec(compile(src, name, "exec"), mod.__dict__)
                return None
            except BaseException as e:
                try:
                    msg = type(e).__name__ + ": " + str(e)
                except BaseException:
                    msg = "exception"
                return " ".join(msg.split())[:200]

        err = run(program, mod.__file__)
        if err is None and setup:
            err = run(setup, "setup")
        if err is not None:
            report("program " + err)
        else:
            for i, t in enumerate(job_tests):
                e = run(t, "test_%d" % i)
                report("test %d %s" % (i, "ok" if e is None else "fail " + e))
        report("done")
    finally:
        os._exit(0)


def _cleanup(pid):
    # SIGKILL the job's group and, as PID 1 of a namespace, everything else left.
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.getpid() == 1 and os.kill(-1, signal.SIGKILL)):
        try:
            target()
        except OSError:
            pass
    status = None
    while True:  # reap the child and, as PID 1, every orphan handed to us
        try:
            p, st = os.waitpid(-1, 0 if status is None else os.WNOHANG)
        except ChildProcessError:
            break
        if p == 0:
            break
        if p == pid:
            status = st
    return status


def _describe(status):
    if status is None:
        return "lost"
    if os.WIFSIGNALED(status):
        return "signal %d" % os.WTERMSIG(status)
    return "exit %d" % os.WEXITSTATUS(status)


def _main():
    nonce = sys.stdin.readline().strip()
    with open("tests.json", encoding="utf-8") as f:
        spec = json.load(f)
    for name in ("tests.json", "harness.py"):
        try:
            os.remove(name)
        except OSError:
            pass
    timeout = float(spec["timeout"])
    jobs = spec["jobs"]
    del spec

    # Forked children share what is loaded here copy-on-write: import the modules
    # solutions use most, warm the compiler up and freeze the heap out of the GC,
    # so a job costs a fork and its own work, not an interpreter start.
    import bisect, collections, copy, functools, heapq, itertools, math, operator, re, string, typing  # noqa: F401
    exec(compile("def _warm(x):\n    return [i for i in x]\n_warm(range(3))", "warm", "exec"), {})
    gc.collect()
    gc.freeze()

    def emit(line):
        data = (nonce + " " + line + "\n").encode("utf-8", "replace")
        while data:
            data = data[os.write(1, data):]

    for j in range(len(jobs)):
        token = os.urandom(16).hex()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            _child(jobs[j], token, w, j)
        os.close(w)
        jobs[j] = None
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass
        deadline = time.monotonic() + timeout
        buf, ended, end = b"", None, (token + " done\n").encode()
        while end not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                ended = "timeout"
                break
            if not select.select([r], [], [], left)[0]:
                continue
            chunk = os.read(r, 65536)
            if not chunk:
                break
            buf += chunk
            if len(buf) > CAP:
                ended = "flooded its result pipe"
                break
        os.close(r)
        status = _cleanup(pid)
        done = False
        for line in buf.decode("utf-8", "replace").split("\n"):
            if line.startswith(token + " "):
                rest = line[len(token) + 1:]
                done = done or rest == "done"
                emit("job %d %s" % (j, rest))
        if not done:
            emit("job %d ended %s" % (j, ended or _describe(status)))
    emit("done")


_main()
os._exit(0)
)PY";
  return src;
}

std::string code_harness_spec(const std::vector<const CodeTestCode*>& jobs, const std::vector<std::string>& programs,
                              double timeout_s) {
  nlohmann::json j = {{"timeout", timeout_s}, {"jobs", nlohmann::json::array()}};
  for (size_t i = 0; i < jobs.size(); ++i)
    j["jobs"].push_back({{"program", programs.at(i)}, {"setup", jobs[i]->setup}, {"tests", jobs[i]->tests}});
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string code_harness_program(const CodeTestCode& tc, const std::string& code) {
  if (tc.prefix.empty()) return code;
  return tc.prefix + (tc.prefix.back() == '\n' ? "" : "\n") + code;
}

std::vector<HarnessOutcome> parse_code_harness_output(const std::string& out, const std::string& nonce,
                                                      const std::vector<size_t>& n_tests) {
  std::vector<HarnessOutcome> res(n_tests.size());
  for (size_t j = 0; j < n_tests.size(); ++j) {
    res[j].passed.assign(n_tests[j], false);
    res[j].failure.assign(n_tests[j], "");
  }
  const std::string tag = nonce + " job ";
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    if (nonce.empty() || line.compare(0, tag.size(), tag) != 0) continue;
    std::istringstream f(line.substr(tag.size()));
    size_t j = 0;
    std::string what;
    if (!(f >> j >> what) || j >= res.size()) continue;
    HarnessOutcome& h = res[j];
    std::string rest;
    std::getline(f, rest);
    if (!rest.empty() && rest[0] == ' ') rest.erase(0, 1);
    if (what == "done") {
      h.done = true;
    } else if (what == "program") {
      h.program_error = rest;
    } else if (what == "ended") {
      h.ended = rest;
    } else if (what == "test") {
      std::istringstream t(rest);
      size_t i = 0;
      std::string verdict;
      if (!(t >> i >> verdict) || i >= n_tests[j]) continue;
      if (verdict == "ok") {
        h.passed[i] = true;
      } else {
        std::string reason;
        std::getline(t, reason);
        h.failure[i] = reason.empty() ? verdict : reason.substr(1);
      }
    }
  }
  return res;
}

std::string code_harness_nonce() {
  std::random_device rd;
  std::ostringstream s;
  s << std::hex;
  for (int i = 0; i < 4; ++i) {
    uint32_t v = rd();
    for (int b = 0; b < 8; ++b) s << ((v >> (4 * b)) & 0xF);
  }
  return s.str();
}

}  // namespace temper
