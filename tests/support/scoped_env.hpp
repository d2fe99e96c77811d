// ScopedEnv: sets or removes an environment variable for one scope, restoring it afterwards.
#ifndef LLM_STREAM_TEST_SCOPED_ENV_HPP
#define LLM_STREAM_TEST_SCOPED_ENV_HPP

#include <cstdlib>
#include <optional>
#include <string>

class ScopedEnv {
public:
    /* nullopt removes the variable; on Windows an empty value removes it too. */
    ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        set(name_, value);
    }
    ~ScopedEnv() { set(name_, old_); }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;

private:
    static void set(const char* name, const std::optional<std::string>& value) {
#if defined(_WIN32)
        _putenv_s(name, value ? value->c_str() : "");
#else
        if (value) setenv(name, value->c_str(), 1);
        else unsetenv(name);
#endif
    }

    const char* name_;
    std::optional<std::string> old_;
};

#endif
