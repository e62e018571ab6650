#include "tokenizer/text_util.h"

#include "core/error.h"

#ifdef LOWBIT_HAVE_ICU
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include <vector>
#endif

namespace lowbit::tokenizer {

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

uint32_t next_code_point(std::string_view s, size_t& i) {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  uint8_t c = b(i);
  size_t n = utf8_len(c);
  if (i + n > s.size()) n = 1;
  uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (b(i + k) & 0x3F);
  i += n;
  return cp;
}

std::string sanitize_utf8(std::string_view s) {
  std::string out;
  size_t i = 0;
  bool changed = false;
  const auto u = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  while (i < s.size()) {
    uint8_t c = u(i);
    size_t need = 0;
    uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    }
    size_t j = i + 1;
    size_t got = 0;
    while (got < need && j < s.size()) {
      uint8_t d = u(j);
      bool ok = got == 0 ? (d >= lo && d <= hi) : (d >= 0x80 && d <= 0xBF);
      if (!ok) break;
      ++got;
      ++j;
    }
    if (need > 0 && got == need) {
      out.append(s.substr(i, j - i));
    } else {
      out += "\xEF\xBF\xBD";
      changed = true;
    }
    i = j;
  }
  (void)changed;
  return out;
}

ByteLevelMap::ByteLevelMap() {
  cp_to_byte_.fill(-1);
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    uint32_t cp = printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(256 + n++);
    append_utf8(byte_to_utf8_[b], cp);
    cp_to_byte_[cp] = static_cast<int16_t>(b);
  }
}

bool ByteLevelMap::decode(std::string_view mapped, std::string& out) const {
  size_t i = 0;
  while (i < mapped.size()) {
    uint32_t cp = next_code_point(mapped, i);
    if (cp >= cp_to_byte_.size() || cp_to_byte_[cp] < 0) return false;
    out += static_cast<char>(cp_to_byte_[cp]);
  }
  return true;
}

const ByteLevelMap& byte_level_map() {
  static const ByteLevelMap map;
  return map;
}

bool nfc_available() {
#ifdef LOWBIT_HAVE_ICU
  return true;
#else
  return false;
#endif
}

std::string nfc(std::string_view s) {
  bool ascii = true;
  for (char c : s) ascii &= static_cast<uint8_t>(c) < 0x80;
  if (ascii) return std::string(s);  // ASCII is always in NFC
#ifdef LOWBIT_HAVE_ICU
  UErrorCode err = U_ZERO_ERROR;
  const UNormalizer2* norm = unorm2_getNFCInstance(&err);
  if (U_FAILURE(err)) fail("tokenizer: NFC normalizer unavailable: {}", u_errorName(err));
  // UTF-8 -> UTF-16 -> NFC -> UTF-8 (input is valid UTF-8 here: sanitized by the caller).
  std::vector<UChar> u16(s.size() + 1);
  int32_t n16 = 0;
  u_strFromUTF8(u16.data(), static_cast<int32_t>(u16.size()), &n16, s.data(),
                static_cast<int32_t>(s.size()), &err);
  if (U_FAILURE(err)) fail("tokenizer: NFC: UTF-8 conversion failed: {}", u_errorName(err));
  if (unorm2_isNormalized(norm, u16.data(), n16, &err) && U_SUCCESS(err)) return std::string(s);
  err = U_ZERO_ERROR;
  std::vector<UChar> outb(static_cast<size_t>(n16) * 3 + 16);
  int32_t nout =
      unorm2_normalize(norm, u16.data(), n16, outb.data(), static_cast<int32_t>(outb.size()), &err);
  if (U_FAILURE(err)) fail("tokenizer: NFC normalization failed: {}", u_errorName(err));
  std::string out(static_cast<size_t>(nout) * 3 + 4, '\0');
  int32_t n8 = 0;
  u_strToUTF8(out.data(), static_cast<int32_t>(out.size()), &n8, outb.data(), nout, &err);
  if (U_FAILURE(err)) fail("tokenizer: NFC: UTF-8 conversion failed: {}", u_errorName(err));
  out.resize(static_cast<size_t>(n8));
  return out;
#else
  return std::string(s);
#endif
}

}  // namespace lowbit::tokenizer
