// Byte-for-byte comparison with Python jinja2 as transformers' apply_chat_template runs it.
// Fixtures: tools/gen_chat_fixtures.py -> tests/fixtures/chat/{templates,features}.json.
#include "tokenizer/chat_template.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "core/error.h"
#include "test_paths.h"

namespace lowbit::tokenizer {
namespace {

using nlohmann::ordered_json;

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << path;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

ordered_json load(const std::string& rel) {
  return ordered_json::parse(read_file(testing::source_path(rel)));
}

std::string template_source(const std::string& name) {
  if (name == "smollm2")
    return read_file(testing::source_path("tests/fixtures/chat/smollm2.jinja"));
  auto cfg = ordered_json::parse(
      read_file(testing::shared_path("models/tokenizers/" + name + "/tokenizer_config.json")));
  return cfg.at("chat_template").get<std::string>();
}

TEST(ChatTemplate, RealTemplatesMatchTransformers) {
  if (!testing::shared_available()) GTEST_SKIP() << "../shared not available";
  ordered_json fx = load("tests/fixtures/chat/templates.json");
  ASSERT_GE(fx["cases"].size(), 30u);
  std::map<std::string, int> per_template;
  for (const auto& c : fx["cases"]) {
    const std::string tname = c["template"].get<std::string>();
    const std::string src = template_source(tname);
    SCOPED_TRACE(tname + "/" + c["name"].get<std::string>());
    std::string got;
    ASSERT_NO_THROW(got = render_chat_template_json(src, c["variables"]));
    EXPECT_EQ(got, c["expected"].get<std::string>());
    ++per_template[tname];

    // The struct API must agree whenever the messages are plain role/content pairs.
    const auto& vars = c["variables"];
    bool plain = !vars.contains("tools");
    ChatTemplateInputs in;
    for (const auto& m : vars["messages"]) {
      plain = plain && m.size() == 2 && m.contains("role") && m.contains("content");
      if (plain) in.messages.push_back({m["role"], m["content"]});
    }
    if (!plain) continue;
    in.add_generation_prompt = vars.value("add_generation_prompt", false);
    in.bos_token = vars.value("bos_token", "");
    in.eos_token = vars.value("eos_token", "");
    if (vars.contains("enable_thinking")) in.extra["enable_thinking"] = vars["enable_thinking"];
    EXPECT_EQ(render_chat_template(src, in), c["expected"].get<std::string>());
  }
  EXPECT_EQ(per_template.size(), 3u);
}

TEST(ChatTemplate, FeaturesMatchJinja2) {
  ordered_json fx = load("tests/fixtures/chat/features.json");
  ASSERT_GE(fx["cases"].size(), 40u);
  int errors = 0;
  for (const auto& c : fx["cases"]) {
    const std::string src = c["template"].get<std::string>();
    SCOPED_TRACE("feature case " + std::to_string(c["id"].get<int>()) + ": " + src);
    if (c.value("error", false)) {
      ++errors;
      try {
        render_chat_template_json(src, c["variables"]);
        ADD_FAILURE() << "expected an error like: " << c["python_error"].get<std::string>();
      } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()).rfind("chat template", 0), 0u) << e.what();
      }
      continue;
    }
    std::string got;
    try {
      got = render_chat_template_json(src, c["variables"]);
    } catch (const Error& e) {
      ADD_FAILURE() << e.what();
      continue;
    }
    EXPECT_EQ(got, c["expected"].get<std::string>());
  }
  EXPECT_GE(errors, 10);
}

}  // namespace
}  // namespace lowbit::tokenizer
