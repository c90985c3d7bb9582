// A strict JSON syntax check (RFC 8259) for the files ptemu writes.
#pragma once

#include <cctype>
#include <cstring>
#include <string>

namespace ptemu_test {

class JsonCheck {
      public:
	static bool valid(const std::string &text)
	{
		JsonCheck c(text);

		return c.value(0) && (c.ws(), c.i_ == text.size());
	}

      private:
	explicit JsonCheck(const std::string &text) : s_(text) {}

	bool more() const { return i_ < s_.size(); }
	void ws()
	{
		while (more() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\r' || s_[i_] == '\n'))
			i_++;
	}
	bool lit(const char *w)
	{
		size_t n = strlen(w);

		if (s_.compare(i_, n, w))
			return false;
		i_ += n;
		return true;
	}
	bool digits()
	{
		size_t start = i_;

		while (more() && isdigit((unsigned char)s_[i_]))
			i_++;
		return i_ > start;
	}
	bool str()
	{
		if (!lit("\""))
			return false;
		while (more()) {
			unsigned char c = (unsigned char)s_[i_++];

			if (c == '"')
				return true;
			if (c < 0x20)
				return false;
			if (c != '\\')
				continue;
			if (!more())
				return false;
			char e = s_[i_++];
			if (e == 'u') {
				for (int k = 0; k < 4; k++)
					if (!more() || !isxdigit((unsigned char)s_[i_++]))
						return false;
			} else if (!e || !strchr("\"\\/bfnrt", e)) {
				return false;
			}
		}
		return false;
	}
	bool num()
	{
		lit("-");
		if (!lit("0") && !digits())
			return false;
		if (lit(".") && !digits())
			return false;
		if (lit("e") || lit("E")) {
			if (!lit("+"))
				lit("-");
			return digits();
		}
		return true;
	}
	bool members(int depth, char close, bool keys)
	{
		ws();
		if (more() && s_[i_] == close)
			return ++i_, true;
		do {
			ws();
			if (keys && (!str() || (ws(), !lit(":"))))
				return false;
			if (!value(depth + 1))
				return false;
			ws();
		} while (lit(","));
		return more() && s_[i_++] == close;
	}
	bool value(int depth)
	{
		ws();
		if (depth > 64 || !more())
			return false;
		if (lit("{"))
			return members(depth, '}', true);
		if (lit("["))
			return members(depth, ']', false);
		if (s_[i_] == '"')
			return str();
		return lit("true") || lit("false") || lit("null") || num();
	}

	const std::string &s_;
	size_t i_ = 0;
};

} // namespace ptemu_test
