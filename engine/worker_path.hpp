// Where the shmgemm-worker executable is.
#pragma once

#include <string>

namespace shmgemm::detail {

// $SHMGEMM_WORKER if set; else shmgemm-worker beside this process's executable; else the
// installed one (libexec/shmgemm). Throws Error saying where it looked.
std::string worker_executable();

}  // namespace shmgemm::detail
