// UTF-8 and byte-level helpers shared by the BPE tokenizers: invalid-UTF-8 replacement (the
// same policy as Python's errors='replace'), the GPT-2 byte <-> printable-char map, NFC.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace lowbit::tokenizer {

// Replaces every maximal invalid subsequence with U+FFFD (Unicode "maximal subpart"
// practice, identical to Python's bytes.decode('utf-8', errors='replace')). Valid input is
// returned unchanged.
std::string sanitize_utf8(std::string_view s);
// Length of the (valid) UTF-8 sequence starting with byte `lead`; 1 for invalid leads.
inline size_t utf8_len(uint8_t lead) {
  return lead < 0x80 ? 1 : (lead >> 5) == 6 ? 2 : (lead >> 4) == 14 ? 3 : (lead >> 3) == 30 ? 4 : 1;
}
void append_utf8(std::string& out, uint32_t cp);
// Decodes the code point at s[i] (s must be valid UTF-8) and advances i.
uint32_t next_code_point(std::string_view s, size_t& i);

// GPT-2 bytes_to_unicode(): each byte maps to one printable code point ("Ġ" for ' ').
class ByteLevelMap {
 public:
  ByteLevelMap();
  const std::string& encode_byte(uint8_t b) const { return byte_to_utf8_[b]; }
  // Inverse on a whole string of mapped chars; false when some char is not a mapped byte.
  bool decode(std::string_view mapped, std::string& out) const;

 private:
  std::array<std::string, 256> byte_to_utf8_;
  std::array<int16_t, 324> cp_to_byte_;  // mapped code points are all < 324
};
const ByteLevelMap& byte_level_map();

// Unicode NFC. Uses ICU when the build has it (LOWBIT_HAVE_ICU); without ICU the text is
// returned unchanged (exact for text already in NFC, which is nearly all real text).
bool nfc_available();
std::string nfc(std::string_view s);

}  // namespace lowbit::tokenizer
