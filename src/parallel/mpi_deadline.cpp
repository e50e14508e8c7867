// Deadlines for MPI collectives (see mpi_deadline.h).
#include "parallel/mpi_deadline.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>

#include "core/error.h"

namespace temper {
namespace {

constexpr int kQueryTag = 0x7e170;  // "where are you on communicator K?"
constexpr int kReplyTag = 0x7e171;  // "I have started N collectives on it; waiting in X"

struct Query {
  uint64_t id;
  uint64_t key;
};
struct Reply {
  uint64_t id;
  int64_t seq;       // collectives started on the communicator; -1: not a member / unknown
  int32_t waiting;   // 1 while waiting in one
  char coll[28];     // the collective it waits in
};

using Clock = std::chrono::steady_clock;

std::mutex g_mu;  // the registry; collectives themselves run on one thread per communicator

// Messages in flight: MPI owns a send buffer until the send completes, so each one is
// kept here and dropped once its request has completed.
struct Pending {
  MPI_Request req;
  std::vector<char> data;
};
std::vector<Pending>& in_flight() {
  static std::vector<Pending> v;
  return v;
}

void send_small(const void* data, size_t n, int dest, int tag) {
  auto& v = in_flight();
  for (size_t i = 0; i < v.size();) {  // forget the completed ones
    int done = 0;
    MPI_Test(&v[i].req, &done, MPI_STATUS_IGNORE);
    if (done) {
      v[i] = std::move(v.back());
      v.pop_back();
    } else {
      ++i;
    }
  }
  v.push_back(Pending{MPI_REQUEST_NULL, std::vector<char>(static_cast<const char*>(data), static_cast<const char*>(data) + n)});
  if (MPI_Isend(v.back().data.data(), int(n), MPI_BYTE, dest, tag, MPI_COMM_WORLD, &v.back().req) != MPI_SUCCESS)
    v.pop_back();
}
std::map<uint64_t, CollectiveDeadline*>& registry() {
  static std::map<uint64_t, CollectiveDeadline*> r;
  return r;
}

uint64_t fnv1a(uint64_t h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

bool mpi_usable() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init && !fin;
}

}  // namespace

CollectiveDeadline::CollectiveDeadline(MPI_Comm comm, const std::string& name) : name_(name) {
  if (!mpi_usable() || comm == MPI_COMM_NULL) return;
  int size = 1;
  MPI_Comm_rank(comm, &rank_);
  MPI_Comm_size(comm, &size);
  MPI_Group group, world;
  MPI_Comm_group(comm, &group);
  MPI_Comm_group(MPI_COMM_WORLD, &world);
  std::vector<int> ranks(size_t(size), 0);
  for (int i = 0; i < size; ++i) ranks[size_t(i)] = i;
  world_ranks_.assign(size_t(size), MPI_UNDEFINED);
  MPI_Group_translate_ranks(group, size, ranks.data(), world, world_ranks_.data());
  MPI_Group_free(&group);
  MPI_Group_free(&world);
  uint64_t h = fnv1a(1469598103934665603ull, name.data(), name.size());
  h = fnv1a(h, world_ranks_.data(), world_ranks_.size() * sizeof(int));
  std::lock_guard<std::mutex> lock(g_mu);
  // Two communicators of the same name and members (duplicates) get distinct keys in creation order,
  // which every member follows identically.
  while (registry().count(h)) h = fnv1a(h, "+", 1);
  key_ = h;
  registry()[key_] = this;
}

CollectiveDeadline::~CollectiveDeadline() {
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = registry().find(key_);
  if (it != registry().end() && it->second == this) registry().erase(it);
}

void CollectiveDeadline::answer_queries() {
  if (!mpi_usable()) return;
  while (true) {
    int flag = 0;
    MPI_Status st;
    if (MPI_Iprobe(MPI_ANY_SOURCE, kQueryTag, MPI_COMM_WORLD, &flag, &st) != MPI_SUCCESS || !flag) return;
    Query q{};
    if (MPI_Recv(&q, sizeof q, MPI_BYTE, st.MPI_SOURCE, kQueryTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE) != MPI_SUCCESS)
      return;
    Reply r{};
    r.id = q.id;
    r.seq = -1;
    {
      std::lock_guard<std::mutex> lock(g_mu);
      auto it = registry().find(q.key);
      if (it != registry().end()) {
        r.seq = it->second->seq_;
        r.waiting = it->second->waiting_in_ ? 1 : 0;
        if (it->second->waiting_in_) std::strncpy(r.coll, it->second->waiting_in_, sizeof r.coll - 1);
      }
    }
    send_small(&r, sizeof r, st.MPI_SOURCE, kReplyTag);
  }
}

int CollectiveDeadline::wait(MPI_Request* req, const char* coll) {
  ++seq_;
  if (timeout_s_ <= 0 || world_ranks_.size() <= 1) return MPI_Wait(req, MPI_STATUS_IGNORE);
  waiting_in_ = coll;
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration<double>(timeout_s_);
  auto next_answer = start;
  for (unsigned n = 0;; ++n) {
    int done = 0;
    const int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS || done) {
      waiting_in_ = nullptr;
      return rc;
    }
    if ((n & 63) == 0) {
      const auto now = Clock::now();
      if (now >= deadline) report_timeout(req, coll);
      if (now >= next_answer) {  // others may be asking where this rank is
        answer_queries();
        next_answer = now + std::chrono::milliseconds(5);
      }
    }
    sched_yield();  // MPI progresses inside MPI_Test; on a full machine the others get the core
  }
}

void CollectiveDeadline::report_timeout(MPI_Request* req, const char* coll) {
  static uint64_t counter = 0;
  const uint64_t id = (uint64_t(getpid()) << 32) ^ ++counter;
  int me = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  const int n = int(world_ranks_.size());
  const Query query{id, key_};
  std::vector<int> answered(size_t(n), 0);
  std::vector<Reply> replies(static_cast<size_t>(n), Reply{});
  for (int i = 0; i < n; ++i) {
    if (i == rank_ || world_ranks_[size_t(i)] == MPI_UNDEFINED) continue;
    send_small(&query, sizeof query, world_ranks_[size_t(i)], kQueryTag);
  }
  // Answers come from ranks that are waiting in some collective: allow a short window.
  const double window = std::min(2.0, std::max(0.2, 0.25 * timeout_s_));
  const auto until = Clock::now() + std::chrono::duration<double>(window);
  int missing = n - 1;
  while (missing > 0 && Clock::now() < until) {
    int done = 0;
    if (MPI_Test(req, &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && done) break;  // it came after all
    answer_queries();
    int flag = 0;
    MPI_Status st;
    if (MPI_Iprobe(MPI_ANY_SOURCE, kReplyTag, MPI_COMM_WORLD, &flag, &st) == MPI_SUCCESS && flag) {
      Reply r{};
      MPI_Recv(&r, sizeof r, MPI_BYTE, st.MPI_SOURCE, kReplyTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      for (int i = 0; i < n; ++i)
        if (world_ranks_[size_t(i)] == st.MPI_SOURCE && r.id == id && !answered[size_t(i)]) {
          answered[size_t(i)] = 1;
          replies[size_t(i)] = r;
          --missing;
        }
    } else {
      sched_yield();
    }
  }
  std::string absent, arrived = cat(me);
  for (int i = 0; i < n; ++i) {
    if (i == rank_) continue;
    const int w = world_ranks_[size_t(i)];
    if (!answered[size_t(i)]) {
      absent += cat(absent.empty() ? "" : "; ", w, " (not responding: stopped, dead, or busy outside MPI)");
    } else if (replies[size_t(i)].seq >= seq_) {
      arrived += cat(", ", w);
    } else {
      const Reply& r = replies[size_t(i)];
      absent += cat(absent.empty() ? "" : "; ", w, " (has started ", r.seq, " collectives on it",
                    r.waiting ? cat(", waiting in ", std::string(r.coll, strnlen(r.coll, sizeof r.coll))) : ", computing",
                    ")");
    }
  }
  waiting_in_ = nullptr;
  fail("MPI ", coll, " on communicator '", name_, "' (its collective #", seq_, ") did not complete within "
       "parallel.comm_timeout = ", timeout_s_, " s. World ranks that did not arrive: ",
       absent.empty() ? "none found (all arrived: the MPI transport itself is stuck)" : absent,
       "; arrived: ", arrived, ". The job is aborted; check the named ranks' logs and nodes");
}

}  // namespace temper
