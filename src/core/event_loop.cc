#include "core/event_loop.h"

#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/strings.h"

namespace bulwark {

EventLoop::EventLoop() : now_ms_(MonotonicMs()), timers_(now_ms_) {}

EventLoop::~EventLoop() {
  if (wakefd_ >= 0) close(wakefd_);
  if (epfd_ >= 0) close(epfd_);
}

absl::Status EventLoop::Init() {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) return absl::InternalError(StrCat("epoll_create1: ", strerror(errno)));
  wakefd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wakefd_ < 0) return absl::InternalError(StrCat("eventfd: ", strerror(errno)));
  return Add(wakefd_, EPOLLIN, this);
}

absl::Status EventLoop::Add(int fd, uint32_t events, IoHandler* h) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = h;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    return absl::InternalError(StrCat("epoll_ctl(ADD): ", strerror(errno)));
  }
  return absl::OkStatus();
}

void EventLoop::Remove(int fd) { epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr); }

void EventLoop::Forget(IoHandler* h) {
  for (int j = batch_i_ + 1; j < batch_n_; ++j) {
    if (batch_[j].data.ptr == h) batch_[j].data.ptr = nullptr;
  }
}

void EventLoop::Stop() {
  stop_.store(true, std::memory_order_relaxed);
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(wakefd_, &one, sizeof(one));
}

void EventLoop::Post(std::function<void()> fn) {
  {
    MutexLock lock(&mu_);
    posted_.push_back(std::move(fn));
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(wakefd_, &one, sizeof(one));
}

void EventLoop::OnIo(uint32_t) {
  uint64_t v;
  while (read(wakefd_, &v, sizeof(v)) > 0) {
  }
  RunPosted();
}

void EventLoop::RunPosted() {
  std::vector<std::function<void()>> tasks;
  {
    MutexLock lock(&mu_);
    tasks.swap(posted_);
  }
  for (auto& t : tasks) t();
}

void EventLoop::Run() {
  constexpr int kMaxEvents = 256;
  epoll_event events[kMaxEvents];
  while (!stop_.load(std::memory_order_relaxed)) {
    UpdateTime();
    int timeout = timers_.NextTimeoutMs(now_ms_);
    int n = epoll_wait(epfd_, events, kMaxEvents, timeout);
    if (n < 0 && errno != EINTR) break;
    UpdateTime();
    batch_ = events;
    batch_n_ = n;
    for (batch_i_ = 0; batch_i_ < n; ++batch_i_) {
      auto* h = static_cast<IoHandler*>(events[batch_i_].data.ptr);
      if (h != nullptr) h->OnIo(events[batch_i_].events);
    }
    batch_n_ = 0;
    timers_.Advance(now_ms_);
    // Both vectors keep their capacity: no allocation per batch.
    while (!deferred_.empty()) {
      running_.swap(deferred_);
      for (auto& fn : running_) fn();
      running_.clear();
    }
    if (batch_hook_) batch_hook_();
  }
  RunPosted();
}

}  // namespace bulwark
