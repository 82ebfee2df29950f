// A mutex the thread-safety analysis and ThreadSanitizer both understand.
//
// Debian's abseil is built without ThreadSanitizer, so its absl::Mutex hands over memory in code
// TSan cannot see and every access it guards looks like a race. This is std::mutex (pthreads,
// which TSan intercepts) with the capability annotations clang's -Wthread-safety needs.
#pragma once

#include <mutex>

#include "absl/base/thread_annotations.h"

namespace bulwark {

class ABSL_LOCKABLE Mutex {
 public:
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { m_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { m_.unlock(); }

 private:
  std::mutex m_;
};

class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* m) ABSL_EXCLUSIVE_LOCK_FUNCTION(m) : m_(m) { m_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { m_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* m_;
};

}  // namespace bulwark
