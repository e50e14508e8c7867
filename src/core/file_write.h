// Checked file writes. Every file a run writes (metrics, the resolved deck,
// evaluation results, summaries) goes through these, so a full disk, a vanished
// folder or a missing permission is an Error naming the file (exit 2), never a
// file silently cut mid-line.
#pragma once
#include <string>

namespace temper {

// Writes `text` to a sibling temporary file, fsyncs it and renames it over `path`:
// readers see the old file or the whole new one, never a part. Throws on any failure
// (the temporary file is removed).
void write_file_atomic(const std::string& path, const std::string& text);

// The atomic write of a file that something else filled (HDF5 checkpoints and trajectory
// dumps: written as a `.partial` sibling, fsynced with fsync_path, then committed):
// fsync_path flushes a file or a folder to disk; rename_durably renames `partial` over
// `final_path` and fsyncs their folder, so a crash leaves the old file or the whole new
// one. Both throw naming the path; rename_durably removes `partial` when the rename fails.
void fsync_path(const std::string& path, bool directory);
void rename_durably(const std::string& partial, const std::string& final_path);

// A file written line by line (metrics, per-sample results): each write() hands the
// whole text to the kernel or throws naming the file; close() reports a failed close.
class LineFile {
 public:
  enum class Mode { Append, Truncate };
  LineFile() = default;
  LineFile(const std::string& path, Mode mode);
  ~LineFile();
  LineFile(LineFile&& o) noexcept;
  LineFile& operator=(LineFile&& o) noexcept;
  LineFile(const LineFile&) = delete;
  LineFile& operator=(const LineFile&) = delete;

  bool is_open() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }
  void write(const std::string& text);
  void close();

 private:
  int fd_ = -1;
  std::string path_;
};

}  // namespace temper
