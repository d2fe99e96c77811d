/* llm-game-loop — many NPC dialogues streamed at once from one fixed-rate frame loop that never blocks.

   Each frame asks a StreamSet which streams can progress (a wait of 0 ms: it only looks), polls those
   until they have nothing more, adds the new text to each NPC's line, then sleeps until the next frame.
   An NPC whose line has ended starts its next one (a new stream), so the load stays steady for the
   whole run; after it, the lines in progress finish. At the end it prints the frames, the replies and
   the time spent in the library per frame (median, 99th percentile, and `worst frame: X ms`, SPEC 6).

   Configured like llm-chat (LLM_BASE_URL, LLM_API_KEY, LLM_MODEL, LLM_API, then .env); without
   LLM_BASE_URL the stub answers, a chunk every 30 ms unless LLM_STUB_DELAY_MS says otherwise.
   Exit status: 0 every reply completed, 1 a reply failed (or the configuration is broken), 2 bad usage,
   130 interrupted. */

#define LLM_STREAM_IMPLEMENTATION
#include "llm_stream.hpp"
#include "cli_support.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using Milliseconds = std::chrono::duration<double, std::milli>;

constexpr const char* kSynopsis =
    "usage: llm-game-loop [--streams N] [--fps F] [--seconds S] [--print] [--version] [--help]\n";

constexpr const char* kHelp =
    "\n"
    "Streams N NPC dialogues at once from one fixed-rate frame loop that never blocks, each NPC starting\n"
    "its next line when one ends, then prints the time spent in the library per frame.\n"
    "Options also accept the --option=VALUE form.\n"
    "\n"
    "options:\n"
    "  --streams N    dialogues streamed at once, 1 to 1000 (default: 32)\n"
    "  --fps F        frames per second, above 0 and up to 1000 (default: 60)\n"
    "  --seconds S    how long NPCs start new lines, above 0 and up to 86400 (default: 5); the lines in\n"
    "                 progress then finish\n"
    "  --print        print each finished line: '[npc I, line L] NAME: TEXT' (in TEXT, a backslash is\n"
    "                 written \\\\, a line break \\n, a carriage return \\r)\n"
    "  --version      print the library version and TLS backend, then exit\n"
    "  --help         print this help, then exit\n"
    "\n"
    "environment (read from ./.env for the variables the environment does not set):\n"
    "  LLM_BASE_URL, LLM_API_KEY, LLM_MODEL, LLM_API  as for llm-chat; without LLM_BASE_URL, stub mode\n"
    "  LLM_STUB_DELAY_MS   pause between simulated chunks in stub mode (default here: 30)\n"
    "\n"
    "exit status: 0 every line completed, 1 a line failed, 2 bad usage, 130 interrupted\n";


volatile std::sig_atomic_t g_interrupted = 0;
extern "C" void on_interrupt(int) { g_interrupted = 1; }

/* ------------------------------------------------------------------------------------------------
   Command line
   ------------------------------------------------------------------------------------------------ */

struct Settings {
    std::size_t streams = 32;
    double fps = 60;
    double seconds = 5;
    bool print = false;
    bool help = false;
    bool version = false;
};

/* A number within (min, max] (whole when `whole`); false when the text is anything else. */
bool parse_number(const std::string& text, double min, double max, bool whole, double& out) {
    char* end = nullptr;
    out = std::strtod(text.c_str(), &end);
    const bool number = !text.empty() && end == text.c_str() + text.size() && std::isfinite(out);
    return number && out > min && out <= max && (!whole || std::floor(out) == out);
}

bool is_flag(const std::string& name) { return name == "--print" || name == "--help" || name == "--version"; }
bool takes_value(const std::string& name) { return name == "--streams" || name == "--fps" || name == "--seconds"; }

/* One option and its value (nullptr for none); false, saying why, when either is wrong. */
bool apply_option(const std::string& name, const std::string* value, Settings& s, std::string& problem) {
    if (!is_flag(name) && !takes_value(name)) problem = "unknown option " + name;
    else if (is_flag(name) && value) problem = name + " takes no value";
    else if (!is_flag(name) && !value) problem = name + " needs a value";
    if (!problem.empty()) return false;
    if (is_flag(name)) {
        (name == "--print" ? s.print : name == "--help" ? s.help : s.version) = true;
        return true;
    }
    double number = 0;
    const bool whole = name == "--streams";
    if (!parse_number(*value, 0, name == "--seconds" ? 86400 : 1000, whole, number)) {
        const char* range = whole ? "a whole number from 1 to 1000" : name == "--fps" ? "a number above 0, up to 1000"
                                                                                      : "a number above 0, up to 86400";
        problem = name + " must be " + range + ", not '" + *value + "'";
        return false;
    }
    if (whole) s.streams = static_cast<std::size_t>(number);
    else (name == "--fps" ? s.fps : s.seconds) = number;
    return true;
}

/* --name VALUE or --name=VALUE, in any order; nothing else. */
bool parse_settings(int argc, char** argv, Settings& s, std::string& problem) {
    for (int i = 1; i < argc; ++i) {
        std::string name = argv[i];
        if (name.rfind("--", 0) != 0) {
            problem = "unexpected argument '" + name + "'";
            return false;
        }
        std::string value;
        const std::size_t equals = name.find('=');
        bool has_value = equals != std::string::npos;
        if (has_value) {
            value = name.substr(equals + 1);
            name.resize(equals);
        } else if (takes_value(name) && i + 1 < argc) {
            value = argv[++i];
            has_value = true;
        }
        if (!apply_option(name, has_value ? &value : nullptr, s, problem)) return false;
    }
    return true;
}

void print_usage_error(const std::string& what) {
    std::fprintf(stderr, "llm-game-loop: %s\n%sRun 'llm-game-loop --help' for the options.\n", what.c_str(), kSynopsis);
}

/* ------------------------------------------------------------------------------------------------
   The NPCs and what the run measured
   ------------------------------------------------------------------------------------------------ */

struct Npc {
    std::string name;
    std::string persona;  // the system message
    unsigned line = 0;    // the line in progress, from 1
    std::string text;     // what has arrived of it
};

/* NPC i: a character of the village, numbered from the second round of characters on. */
Npc make_npc(std::size_t i) {
    static const char* const characters[][2] = {
        {"Mira", "the blacksmith, gruff but kind"},   {"Old Tom", "the ferryman, who has seen everything"},
        {"Ysolde", "captain of the city guard"},      {"Pip", "a street urchin who sells rumours"},
        {"Brother Anselm", "a monk of few words"},    {"Kestrel", "a huntress back from the north woods"},
        {"Madame Orla", "the fortune teller"},        {"Grub", "a goblin merchant with a cart of oddities"},
    };
    constexpr std::size_t count = sizeof characters / sizeof characters[0];
    Npc npc;
    npc.name = characters[i % count][0];
    if (i >= count) npc.name += " " + std::to_string(i / count + 1);
    npc.persona = "You are " + npc.name + ", " + characters[i % count][1] +
                  ", in a fantasy village. Stay in character and answer in one or two short sentences.";
    npc.text.reserve(1024);  // a line's text grows without allocating in most frames
    return npc;
}

/* What the traveller says for an NPC's line: the NPC's name first, so that every prompt differs. */
std::string traveller_says(const Npc& npc) {
    static const char* const questions[] = {
        "What news from the road?", "Is there work for a sellsword?", "Where can I sleep tonight?",
        "What do you know of the old tower?", "Have you seen a grey horse pass by?",
    };
    return "Traveller to " + npc.name + ": " + questions[(npc.line - 1) % (sizeof questions / sizeof questions[0])];
}

struct Tally {
    std::size_t frames = 0;
    std::size_t overruns = 0;  // frames whose work ended after the next frame was due
    std::size_t completed = 0;
    std::size_t failed = 0;
    std::size_t events = 0;
    std::vector<double> library_ms;                // per frame
    std::map<std::string, std::size_t> failures;   // message -> lines that failed with it
};

/* The value below which `fraction` of the sorted values lie (nearest rank); 0 without values. */
double percentile(const std::vector<double>& sorted, double fraction) {
    if (sorted.empty()) return 0;
    const auto rank = static_cast<std::size_t>(std::ceil(fraction * static_cast<double>(sorted.size())));
    return sorted[std::max<std::size_t>(rank, 1) - 1];
}

/* ------------------------------------------------------------------------------------------------
   The frame loop
   ------------------------------------------------------------------------------------------------ */

class GameLoop {
public:
    GameLoop(llm_stream::Client& client, const Settings& settings);
    /* Frames until the run's time is over and every line in progress has ended (or Ctrl-C). */
    void run();
    const Tally& tally() const noexcept { return tally_; }

private:
    void start_line(std::size_t i);
    void update(bool keep_talking);
    void advance(std::size_t i, bool keep_talking);
    void end_line(std::size_t i);
    void print_line(std::size_t i) const;

    llm_stream::Client& client_;
    const Settings& settings_;
    std::vector<Npc> npcs_;
    std::vector<llm_stream::Stream> streams_;  // streams_[i] is npcs_[i]'s line; never moved (the set points at them)
    llm_stream::StreamSet set_;  // it also returns a line that failed as it was made (a bad URL) once
    llm_stream::ChatOptions options_;
    std::size_t talking_ = 0;   // lines in progress
    Clock::duration library_{}; // time spent in the library during this frame
    Tally tally_;
};

GameLoop::GameLoop(llm_stream::Client& client, const Settings& settings)
    : client_(client), settings_(settings), streams_(settings.streams) {
    options_.max_tokens = 80;  // NPCs speak briefly
    npcs_.reserve(settings.streams);
    for (std::size_t i = 0; i < settings.streams; ++i) {
        npcs_.push_back(make_npc(i));
        start_line(i);
        set_.add(streams_[i]);  // the set watches the Stream object, whichever line it holds
    }
}

void GameLoop::start_line(std::size_t i) {
    Npc& npc = npcs_[i];
    ++npc.line;
    npc.text.clear();
    const std::vector<llm_stream::Message> messages = {llm_stream::Message::system(npc.persona),
                                                       llm_stream::Message::user(traveller_says(npc))};
    const Clock::time_point start = Clock::now();
    streams_[i] = client_.stream_chat(messages, options_);
    library_ += Clock::now() - start;
    ++talking_;
}

void GameLoop::run() {
    const auto period = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1 / settings_.fps));
    const Clock::time_point start = Clock::now();
    const Clock::time_point stop_talking =
        start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(settings_.seconds));
    tally_.library_ms.reserve(static_cast<std::size_t>(settings_.fps * settings_.seconds) + 64);
    for (Clock::time_point frame = start; talking_ > 0 && !g_interrupted;) {
        update(frame < stop_talking);
        frame += period;
        const Clock::time_point now = Clock::now();
        if (now > frame) {  // late: count it and start the next frame now, without trying to catch up
            ++tally_.overruns;
            frame = now;
        } else {
            std::this_thread::sleep_until(frame);
        }
    }
}

/* One frame: the streams that can progress, each polled until it waits; the library's time recorded. */
void GameLoop::update(bool keep_talking) {
    const Clock::time_point start = Clock::now();
    const std::vector<llm_stream::Stream*>& ready = set_.wait(std::chrono::milliseconds(0));
    library_ += Clock::now() - start;
    for (llm_stream::Stream* stream : ready) advance(static_cast<std::size_t>(stream - streams_.data()), keep_talking);
    ++tally_.frames;
    tally_.library_ms.push_back(Milliseconds(library_).count());
    library_ = {};
}

/* poll() until the stream waits; a line that ends is reported and, while the run lasts, followed by the next. */
void GameLoop::advance(std::size_t i, bool keep_talking) {
    for (;;) {
        const Clock::time_point start = Clock::now();
        const llm_stream::PollStatus status = streams_[i].poll();
        library_ += Clock::now() - start;
        if (status == llm_stream::PollStatus::pending) return;
        if (status != llm_stream::PollStatus::event) break;
        ++tally_.events;
        const llm_stream::Event& event = streams_[i].current_event();
        if (event.type == llm_stream::EventType::content && event.choice == 0) npcs_[i].text += event.text;
    }
    end_line(i);
    if (keep_talking) start_line(i);
}

void GameLoop::end_line(std::size_t i) {
    --talking_;
    const llm_stream::Error& error = streams_[i].error();
    if (error) {
        ++tally_.failed;
        ++tally_.failures[error.message];
        return;
    }
    ++tally_.completed;
    if (settings_.print) print_line(i);
}

void GameLoop::print_line(std::size_t i) const {
    const Npc& npc = npcs_[i];
    std::string escaped;
    for (const char c : npc.text) escaped += c == '\\' ? "\\\\" : c == '\n' ? "\\n" : c == '\r' ? "\\r" : std::string(1, c);
    std::printf("[npc %zu, line %u] %s: %s\n", i + 1, npc.line, npc.name.c_str(), escaped.c_str());
}

/* The summary on stdout (`worst frame: X ms` last, SPEC 6) and one stderr line per kind of failure. */
void report(const Settings& settings, const llm_stream::Config& config, Tally& tally) {
    std::sort(tally.library_ms.begin(), tally.library_ms.end());
    const double worst = tally.library_ms.empty() ? 0 : tally.library_ms.back();
    std::printf("%zu dialogues at %g fps for %g s (%s): %zu frames, %zu overran\n", settings.streams, settings.fps,
                settings.seconds, config.stub_mode() ? "stub mode" : config.endpoint_url().c_str(), tally.frames,
                tally.overruns);
    std::printf("lines: %zu completed, %zu failed; %zu events\n", tally.completed, tally.failed, tally.events);
    std::printf("library time per frame: median %.3f ms, 99th percentile %.3f ms\n",
                percentile(tally.library_ms, 0.5), percentile(tally.library_ms, 0.99));
    std::printf("worst frame: %.3f ms\n", worst);
    std::fflush(stdout);
    for (const auto& failure : tally.failures)
        std::fprintf(stderr, "llm-game-loop: error: %s (%zu line%s)\n", failure.first.c_str(), failure.second,
                     failure.second == 1 ? "" : "s");
}

/* The environment's configuration, paced in stub mode; an error when it is broken. */
llm_stream::Error make_config(llm_stream::Config& config) {
    if (llm_stream::Error error = llm_stream::Config::from_env(config)) return error;
    if (config.stub_mode()) {
        std::fputs("llm-game-loop: stub mode (LLM_BASE_URL is not set): simulated replies\n", stderr);
        cli::pace_stub(config);  // so that each line streams over several frames
    }
    return {};
}

}  // namespace

int main(int argc, char** argv) {
    Settings settings;
    std::string problem;
    if (!parse_settings(argc, argv, settings, problem)) {
        print_usage_error(problem);
        return cli::exit_usage;
    }
    if (settings.help || settings.version) {
        std::fputs(settings.help ? kSynopsis : llm_stream::version_string(), stdout);
        std::fputs(settings.help ? kHelp : "\n", stdout);
        return cli::exit_ok;
    }
    std::signal(SIGINT, on_interrupt);  // before the stub notice, which tells a script it may interrupt
    llm_stream::Config config;
    if (const llm_stream::Error error = make_config(config)) {
        std::fprintf(stderr, "llm-game-loop: error: %s\n", error.message.c_str());
        return cli::exit_failure;
    }
    llm_stream::Client client(config);
    GameLoop loop(client, settings);
    loop.run();
    Tally tally = loop.tally();
    report(settings, config, tally);
    if (g_interrupted) {
        std::fputs("llm-game-loop: interrupted\n", stderr);
        return cli::exit_interrupted;
    }
    return tally.failed > 0 ? cli::exit_failure : cli::exit_ok;
}
