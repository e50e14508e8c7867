// JSONL conversation reader: good records, and every bad case naming file:line.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "data/jsonl.h"

using namespace temper;
namespace fs = std::filesystem;

namespace {

class Jsonl : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("temper_jsonl_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& text) {
    std::string p = (dir_ / "data.jsonl").string();
    std::ofstream(p) << text;
    return p;
  }
  // The error message of reading `text`, or "" when it reads fine.
  std::string error_of(const std::string& text) {
    std::string p = write(text);
    try {
      read_jsonl(p);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }
  fs::path dir_;
};

const char* kGood = R"({"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}],"task":"x","answer":"7"})";

}  // namespace

TEST_F(Jsonl, ReadsRecordsKeepsExtraFieldsAndSkipsBlankLines) {
  std::string p = write(std::string(kGood) + "\n\n   \n" +
                        R"({"messages":[{"role":"system","content":"s"},{"role":"user","content":"q"}]})" + "\n");
  auto convs = read_jsonl(p);
  ASSERT_EQ(convs.size(), 2u);
  ASSERT_EQ(convs[0].messages.size(), 2u);
  EXPECT_EQ(convs[0].messages[1].role, "assistant");
  EXPECT_EQ(convs[0].messages[1].content, "yo");
  EXPECT_EQ(convs[0].extra.at("task"), "x");
  EXPECT_EQ(convs[0].extra.at("answer"), "7");
  EXPECT_FALSE(convs[0].extra.contains("messages"));
  EXPECT_EQ(convs[1].source, p + ":4");
  EXPECT_EQ(convs[1].messages[0].role, "system");
}

TEST_F(Jsonl, WriteThenReadRoundTrips) {
  Conversation c;
  c.messages = {{"user", "a \"quoted\"\nline"}, {"assistant", "\\boxed{1}"}};
  c.extra = {{"task", "arith"}, {"constraints", {{"words", 3}}}};
  std::string p = (dir_ / "out.jsonl").string();
  write_jsonl(p, {conversation_to_json(c), conversation_to_json(c)});
  auto back = read_jsonl(p);
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[1].messages[0].content, "a \"quoted\"\nline");
  EXPECT_EQ(back[1].extra.at("constraints").at("words"), 3);
}

TEST_F(Jsonl, MalformedJsonNamesFileAndLine) {
  std::string msg = error_of(std::string(kGood) + "\n" + "{\"messages\": [\n");
  EXPECT_NE(msg.find("data.jsonl:2:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("malformed JSON"), std::string::npos) << msg;
}

TEST_F(Jsonl, MissingMessagesNamesFileAndLine) {
  std::string msg = error_of(std::string(kGood) + "\n\n" + R"({"prompt":"x"})" + "\n");
  EXPECT_NE(msg.find("data.jsonl:3:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing \"messages\""), std::string::npos) << msg;
}

TEST_F(Jsonl, UnknownRoleNamesFileLineAndRole) {
  std::string msg = error_of(R"({"messages":[{"role":"tool","content":"x"}]})");
  EXPECT_NE(msg.find("data.jsonl:1:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unknown role 'tool'"), std::string::npos) << msg;
}

TEST_F(Jsonl, NonStringContentNamesFileAndLine) {
  std::string msg = error_of(std::string(kGood) + "\n" + R"({"messages":[{"role":"user","content":42}]})");
  EXPECT_NE(msg.find("data.jsonl:2:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("must be a string"), std::string::npos) << msg;
}

TEST_F(Jsonl, EmptyFileAndMissingFileAreErrors) {
  std::string msg = error_of("\n  \n");
  EXPECT_NE(msg.find("data.jsonl"), std::string::npos) << msg;
  EXPECT_NE(msg.find("empty"), std::string::npos) << msg;
  try {
    read_jsonl((dir_ / "nope.jsonl").string());
    FAIL() << "no error for a missing file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nope.jsonl"), std::string::npos);
  }
}
