// shmgemm._core: the public C++ API (libshmgemm) for Python, over numpy arrays. The pure-Python
// layer (__init__.py) gives it numpy's conventions; this file converts arrays to ArrayViews,
// releases the GIL while products run, turns a KeyboardInterrupt into a stopped call, and maps
// shmgemm::Error onto Python exceptions.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <shmgemm/shmgemm.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <deque>
#include <future>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace py = pybind11;
using shmgemm::ArrayView;
using shmgemm::DType;
using shmgemm::ErrorCode;
using shmgemm::MutableArrayView;

namespace {

// Python's classes for shmgemm::Error, by ErrorCode (set up in PYBIND11_MODULE).
PyObject* g_error = nullptr;
std::unordered_map<int, PyObject*> g_errors;
// For failures the system reported on a file: shmgemm's class (FileError, or ResourceError)
// joined with the builtin class Python gives that errno (FileNotFoundError, PermissionError),
// made on first use.
std::map<std::pair<PyObject*, PyObject*>, PyObject*> g_os_errors;

PyObject* error_class(ErrorCode code) {
  const auto it = g_errors.find(static_cast<int>(code));
  return it != g_errors.end() ? it->second : g_error;
}

PyObject* os_error_class(ErrorCode code, int error_number) {
  PyObject* ours = error_class(code);
  if (!PyObject_IsSubclass(ours, PyExc_OSError)) ours = error_class(ErrorCode::bad_file);
  // OSError(errno, ...) is an instance of the builtin subclass for that errno.
  const py::object probe = py::reinterpret_borrow<py::object>(PyExc_OSError)(error_number, "");
  PyObject* builtin = reinterpret_cast<PyObject*>(Py_TYPE(probe.ptr()));
  if (builtin == PyExc_OSError) return ours;
  PyObject*& cls = g_os_errors[{ours, builtin}];
  if (cls == nullptr) {
    const std::string name =
        "shmgemm." + py::str(py::handle(builtin).attr("__name__")).cast<std::string>();
    PyObject* bases = PyTuple_Pack(2, ours, builtin);
    cls = PyErr_NewException(name.c_str(), bases, nullptr);
    Py_DECREF(bases);
  }
  return cls;
}

// The Python exception for `e`: its ErrorCode's class, with errno, strerror and filename set
// for a failure the system reported on a file.
py::object exception_of(const shmgemm::Error& e) {
  if (e.error_number() == 0)
    return py::reinterpret_borrow<py::object>(error_class(e.code()))(e.what());
  py::object x =
      py::reinterpret_borrow<py::object>(os_error_class(e.code(), e.error_number()))(e.what());
  x.attr("errno") = e.error_number();
  x.attr("strerror") = std::strerror(e.error_number());
  if (!e.path().empty()) x.attr("filename") = e.path();
  return x;
}

// numpy's type numbers of the engine's dtypes (int64 twice on Linux: long and long long), read
// from numpy itself once.
const std::unordered_map<int, DType>& engine_type_numbers() {
  static const std::unordered_map<int, DType> numbers = [] {
    std::unordered_map<int, DType> m;
    for (const char* code :
         {"b", "B", "h", "H", "i", "I", "l", "L", "q", "Q", "f", "d", "F", "D"}) {
      const py::dtype d(code);
      if (const auto t = shmgemm::dtype_from_name(std::string(py::str(d.attr("name")))))
        m.emplace(d.num(), *t);
    }
    return m;
  }();
  return numbers;
}

// The engine's dtype for numpy's dtype descriptor `descr`, in native byte order; nothing for any
// other (read from the descriptor's fields, as numpy's C API does: no Python calls).
std::optional<DType> engine_dtype(PyObject* descr) {
  const auto* d = py::detail::array_descriptor_proxy(descr);
  if (d->byteorder == '>') return std::nullopt;
  const auto& numbers = engine_type_numbers();
  const auto t = numbers.find(d->type_num);
  if (t == numbers.end()) return std::nullopt;
  return t->second;
}

DType dtype_of(const py::array& a) {
  if (const auto d = engine_dtype(py::detail::array_proxy(a.ptr())->descr)) return *d;
  throw py::type_error("shmgemm: dtype " + std::string(py::str(a.dtype().attr("name"))) +
                       " is not supported (" + std::string(shmgemm::supported_dtypes()) +
                       ", native byte order)");
}

// numpy's dtype object for an engine dtype, made once.
const py::dtype& numpy_dtype(DType t) {
  // Never destroyed: the interpreter may be gone when static destructors run.
  static auto* const made = new std::map<DType, py::dtype>;
  auto it = made->find(t);
  if (it == made->end())
    it = made->emplace(t, py::dtype(std::string(shmgemm::dtype_name(t)))).first;
  return it->second;
}

std::pair<std::vector<std::int64_t>, std::vector<std::int64_t>> layout_of(const py::array& a) {
  std::vector<std::int64_t> shape, strides;
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    shape.push_back(a.shape(i));
    strides.push_back(a.strides(i));
  }
  return {std::move(shape), std::move(strides)};
}

// An operand: read only.
ArrayView view_of(const py::array& a) {
  auto [shape, strides] = layout_of(a);
  return ArrayView(a.data(), dtype_of(a), std::move(shape), std::move(strides));
}

// An `out`: numpy's ValueError for a read-only array.
MutableArrayView out_view_of(py::array out) {
  if (!out.writeable()) throw py::value_error("out: the array is read-only");
  auto [shape, strides] = layout_of(out);
  return MutableArrayView(out.mutable_data(), dtype_of(out), std::move(shape), std::move(strides));
}

shmgemm::Launch launch_of(const std::string& launch) {
  if (launch == "fork") return shmgemm::Launch::fork;
  if (launch == "spawn") return shmgemm::Launch::spawn;
  if (launch == "auto") return shmgemm::Launch::automatic;
  throw py::value_error("launch: '" + launch + "' is not one of 'auto', 'fork', 'spawn'");
}

// The settings every call shares (FileOptions: the fullest type, taken by every call as the
// type it needs).
shmgemm::FileOptions options_of(unsigned workers, const std::string& launch, unsigned threads,
                                bool in_process, bool progress, double timeout) {
  shmgemm::FileOptions o;
  o.workers = workers;
  o.threads = threads;
  o.in_process = in_process;
  o.progress = progress;
  o.timeout = timeout;
  o.launch = launch_of(launch);
  return o;
}

// A numpy array over memory the engine allocated; its base owns the memory, so the array (and
// every view of it) stays valid as long as any of them lives.
// `made` as an ndarray of dtype `d` whose base is `base` (holding made.owner): at its strides,
// and read-only when it is a view other results share (OwnedArray::read_only).
py::array result_array(const shmgemm::OwnedArray& made, const py::dtype& d,
                       const py::handle& base) {
  const std::vector<py::ssize_t> dims(made.view.shape().begin(), made.view.shape().end());
  std::vector<py::ssize_t> strides;
  if (made.read_only) strides.assign(made.view.strides().begin(), made.view.strides().end());
  py::array result(d, dims, strides, made.view.data(), base);
  if (made.read_only) result.attr("setflags")(py::arg("write") = false);
  return result;
}

py::array owned_array(const shmgemm::OwnedArray& made) {
  auto* owner = new std::shared_ptr<void>(made.owner);
  py::capsule base(owner, [](void* p) { delete static_cast<std::shared_ptr<void>*>(p); });
  return result_array(made, numpy_dtype(made.view.dtype()), base);
}

// An operand the engine takes as it is: an ndarray itself (no subclass: np.matrix and masked
// arrays have products of their own), of one of the engine's dtypes in native byte order, not
// 0-d. Its view, or nothing.
std::optional<ArrayView> plain_operand(py::handle x) {
  if (Py_TYPE(x.ptr()) != py::detail::npy_api::get().PyArray_Type_) return std::nullopt;
  // The array's own fields, read as numpy's C API does (one call per set: no Python calls).
  const py::detail::PyArray_Proxy* a = py::detail::array_proxy(x.ptr());
  if (a->nd == 0) return std::nullopt;
  const auto* d = py::detail::array_descriptor_proxy(a->descr);
  if (d->byteorder == '>') return std::nullopt;
  const auto& numbers = engine_type_numbers();
  const auto t = numbers.find(d->type_num);
  if (t == numbers.end()) return std::nullopt;
  return ArrayView(a->data, t->second,
                   std::vector<std::int64_t>(a->dimensions, a->dimensions + a->nd),
                   std::vector<std::int64_t>(a->strides, a->strides + a->nd));
}

// The multiply-adds of np.matmul(a, b) (half its flops).
double multiply_adds(const ArrayView& a, const ArrayView& b) {
  return shmgemm::matmul_flops(a, b) / 2;
}

// Products up to this many multiply-adds (a few milliseconds of float64 on two cores) run on
// the calling thread: a thread of their own would cost more than a tenth of their time (it is
// started each call, and OpenBLAS allocates and faults in its buffers again for each new thread
// that calls it: ~0.4 ms at 300^2). A KeyboardInterrupt then lands when the call returns.
constexpr double kDirectMultiplyAdds = double(1 << 27);

// Runs `call` with the GIL released on a thread of its own, while this thread looks for a
// KeyboardInterrupt every 20 ms (Python's signal handler only sets a flag, and only the main
// thread sees it): one requests `stop`, which stops this call alone, and is raised here once the
// call has returned (its workers gone, nothing left in /dev/shm).
shmgemm::Report run_watched(const std::function<shmgemm::Report()>& call, std::stop_source& stop) {
  std::packaged_task<shmgemm::Report()> task(call);
  std::future<shmgemm::Report> result = task.get_future();
  bool interrupted = false;
  {
    py::gil_scoped_release release;
    std::thread runner(std::move(task));
    while (result.wait_for(std::chrono::milliseconds(20)) != std::future_status::ready) {
      py::gil_scoped_acquire acquire;
      if (PyErr_CheckSignals() != 0) {  // the KeyboardInterrupt is now pending in this thread
        interrupted = true;
        stop.request_stop();
        break;
      }
    }
    result.wait();
    runner.join();
  }
  if (interrupted) throw py::error_already_set();
  return result.get();
}

// Runs `call` with `o`: on this thread (the GIL released) for products of at most
// kDirectMultiplyAdds, else watched (run_watched) with a stop token of its own in `o`.
// Launch::automatic is decided here first: this thread only waits, it is not inside OpenBLAS.
shmgemm::Report run_stoppable(
    const std::function<shmgemm::Report(const shmgemm::FileOptions&)>& call, shmgemm::FileOptions o,
    double multiply_adds) {
  if (multiply_adds <= kDirectMultiplyAdds) {
    return ([&] {
      py::gil_scoped_release release;
      return call(o);
    })();
  }
  if (o.launch == shmgemm::Launch::automatic) o.launch = shmgemm::automatic_launch();
  std::stop_source stop;
  o.stop = stop.get_token();
  return run_watched([&] { return call(o); }, stop);
}

// matmul_many on `views` with these options, stoppable (run_stoppable): the results and the
// report.
std::pair<std::vector<shmgemm::OwnedArray>, shmgemm::Report> run_many(
    const std::vector<std::pair<ArrayView, ArrayView>>& views, unsigned workers,
    const std::string& launch, bool in_process, double timeout, bool copy) {
  shmgemm::FileOptions o = options_of(workers, launch, 0, in_process, false, timeout);
  // Decided here, as run_stoppable would: under launch="auto", a set runs in process while other
  // threads run (its workers are forked, and a fork is unsafe then).
  if (o.launch == shmgemm::Launch::automatic &&
      shmgemm::automatic_launch() != shmgemm::Launch::fork)
    o.in_process = true;
  double work = 0;
  for (const auto& [a, b] : views)
    work += multiply_adds(a, b);
  std::vector<shmgemm::OwnedArray> made;
  const shmgemm::Report r = run_stoppable(
      [&](const shmgemm::FileOptions& x) {
        shmgemm::Report report;
        shmgemm::ManyOptions many;
        static_cast<shmgemm::CallOptions&>(many) = x;
        many.copy = copy;
        made = shmgemm::matmul_many(views, many, &report);
        return report;
      },
      o, work);
  return {std::move(made), r};
}

// A Pool and its jobs in flight: each keeps its arrays alive until done, and its completion is
// queued (from the pool's monitor thread) for the Python thread that resolves futures.
class PyPool {
 public:
  PyPool(unsigned workers, const std::string& launch, unsigned threads, std::size_t arena_bytes,
         double timeout) {
    shmgemm::PoolOptions o;
    o.workers = workers;
    o.launch = launch_of(launch);
    o.threads = threads;
    o.arena_bytes = arena_bytes;
    o.timeout = timeout;
    py::gil_scoped_release release;
    pool_ = std::make_unique<shmgemm::Pool>(o);
  }
  ~PyPool() {
    py::gil_scoped_release release;
    pool_.reset();
  }

  // Runs a job and waits for it, watched (run_watched): a KeyboardInterrupt meanwhile stops
  // the job, while its operands are staged or while it runs (its workers are killed and
  // replaced: the pool goes on), and is raised once they are gone, so that the arrays it wrote
  // may be freed. Jobs of at most kDirectMultiplyAdds are waited for on this thread, as one-shot
  // calls are: a thread of their own would cost more than they take.
  shmgemm::Report matmul(const py::array& a, const py::array& b, const py::array& out) {
    const ArrayView av = view_of(a), bv = view_of(b);
    const MutableArrayView ov = out_view_of(out);
    if (multiply_adds(av, bv) <= kDirectMultiplyAdds) {
      py::gil_scoped_release release;
      return pool_->matmul(av, bv, ov);
    }
    std::stop_source stop;
    return run_watched(
        [&] {
          return pool_->submit(av, bv, ov, {}, {{}, stop.get_token()}).get();
        },
        stop);
  }

  // Queues a job; returns its id. `keep` holds the arrays until the job is collected.
  std::uint64_t submit(const py::array& a, const py::array& b, const py::array& out) {
    const ArrayView av = view_of(a), bv = view_of(b);
    const MutableArrayView ov = out_view_of(out);
    const std::uint64_t id = next_id_++;
    std::stop_source cancel;
    std::future<shmgemm::Report> f = ([&] {
      py::gil_scoped_release release;
      return pool_->submit(av, bv, ov,
                           [this, id] {
                             const std::lock_guard lock(mutex_);
                             done_.push_back(id);
                             ready_.notify_all();
                           },
                           {cancel.get_token(), {}});
    })();
    const std::lock_guard lock(mutex_);
    jobs_.emplace(id, Job{f.share(), py::make_tuple(a, b, out), cancel});
    return id;
  }

  // Cancels job `id` if no worker has taken it: then it never runs, and true.
  bool cancel(std::uint64_t id) {
    std::shared_future<shmgemm::Report> f;
    std::stop_source source;
    {
      const std::lock_guard lock(mutex_);
      const auto it = jobs_.find(id);
      if (it == jobs_.end()) return false;
      f = it->second.future;
      source = it->second.cancel;
    }
    py::gil_scoped_release release;
    source.request_stop();  // the job is dropped now, in this thread, or not at all
    if (f.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return false;
    try {
      f.get();
      return false;
    } catch (const shmgemm::Error& e) {
      return e.code() == ErrorCode::cancelled;
    }
  }

  // Waits up to `timeout` seconds for jobs to finish; returns [(id, report dict or Error)].
  py::list collect(double timeout) {
    std::vector<std::pair<std::uint64_t, Job>> finished;
    {
      py::gil_scoped_release release;
      std::unique_lock lock(mutex_);
      ready_.wait_for(lock, std::chrono::duration<double>(timeout), [&] { return !done_.empty(); });
      std::deque<std::uint64_t> not_recorded;  // done before submit() recorded them: next time
      for (std::uint64_t id : done_) {
        if (auto it = jobs_.find(id); it != jobs_.end()) {
          finished.emplace_back(id, std::move(it->second));
          jobs_.erase(it);
        } else {
          not_recorded.push_back(id);
        }
      }
      done_.swap(not_recorded);
    }
    py::list out;
    for (auto& [id, job] : finished) {
      try {
        out.append(py::make_tuple(id, job.future.get()));
      } catch (const shmgemm::Error& e) {
        out.append(py::make_tuple(id, exception_of(e)));
      }
    }
    return out;
  }

  std::size_t pending() {
    const std::lock_guard lock(mutex_);
    return jobs_.size();
  }

  py::array alloc(const py::dtype& dtype, const std::vector<std::int64_t>& shape) {
    const auto d = shmgemm::dtype_from_name(std::string(py::str(dtype.attr("name"))));
    if (!d)
      throw py::type_error("shmgemm: dtype " + std::string(py::str(dtype.attr("name"))) +
                           " is not supported (" + std::string(shmgemm::supported_dtypes()) + ")");
    shmgemm::SharedArray array = pool_->alloc(*d, shape);
    // Valid while any view of it lives, even past the pool.
    return owned_array({array.view(), array.share()});
  }

  py::dict stats() {
    const shmgemm::PoolStats s = pool_->stats();
    return py::dict(
        py::arg("jobs") = s.jobs, py::arg("tasks") = s.tasks,
        py::arg("staged_bytes") = s.staged_bytes, py::arg("workers_replaced") = s.workers_replaced,
        py::arg("failed_jobs") = s.failed_jobs, py::arg("arena_used_bytes") = s.arena_used_bytes);
  }
  unsigned workers() { return pool_->workers(); }

  // Stops the workers; jobs not finished fail (their completions are queued as usual). In a
  // process other than the pool's, nothing.
  void close() {
    py::gil_scoped_release release;
    pool_->close();
  }
  bool closed() const { return pool_->closed(); }

 private:
  struct Job {
    std::shared_future<shmgemm::Report> future;
    py::object keep;
    std::stop_source cancel;
  };
  std::unique_ptr<shmgemm::Pool> pool_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::uint64_t> done_;
  std::unordered_map<std::uint64_t, Job> jobs_;
  std::uint64_t next_id_ = 0;
};

// f(a, b, out), as Python's in_caller(f, a, b, out) gets it, with OpenBLAS's calls in it
// marked as this thread's (HostBlasGuard): shmgemm forks no worker meanwhile. Waiting for a fork
// in progress, the GIL is released.
PyObject* in_caller(PyObject*, PyObject* const* args, Py_ssize_t count) {
  if (count != 4) {
    PyErr_SetString(PyExc_TypeError, "in_caller(f, a, b, out) takes 4 arguments");
    return nullptr;
  }
  const shmgemm::HostBlasGuard now(std::try_to_lock);
  std::optional<shmgemm::HostBlasGuard> waited;
  if (!now.owns()) {
    py::gil_scoped_release release;
    waited.emplace();
  }
  return PyObject_Vectorcall(args[0], args + 1, args[3] == Py_None ? 2 : 3, nullptr);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.attr("__version__") = SHMGEMM_VERSION;
  m.doc() = "shmgemm's engine for Python (use the shmgemm package, not this module)";
  // Python keeps its signal handlers: a KeyboardInterrupt stops the call of the thread that gets
  // it, through that call's stop token (run_stoppable).

  // One class per ErrorCode, each a subclass of shmgemm.Error and of the builtin class a Python
  // user catches for it.
  g_error = PyErr_NewException("shmgemm.Error", PyExc_Exception, nullptr);
  m.attr("Error") = py::handle(g_error);
  auto sub = [&](const char* name, ErrorCode code, std::initializer_list<PyObject*> also) {
    PyObject* bases = PyTuple_New(static_cast<py::ssize_t>(also.size()));
    py::ssize_t i = 0;
    for (PyObject* base : also) {
      Py_INCREF(base);
      PyTuple_SET_ITEM(bases, i++, base);
    }
    PyObject* cls = PyErr_NewException((std::string("shmgemm.") + name).c_str(), bases, nullptr);
    Py_DECREF(bases);
    g_errors[static_cast<int>(code)] = cls;
    m.attr(name) = py::handle(cls);
    return cls;
  };
  sub("InvalidArgumentError", ErrorCode::invalid_argument, {g_error, PyExc_ValueError});
  sub("FileError", ErrorCode::bad_file, {g_error, PyExc_OSError});
  sub("ShapeError", ErrorCode::shape_mismatch, {g_error, PyExc_ValueError});
  sub("UnsupportedError", ErrorCode::unsupported, {g_error, PyExc_TypeError});
  sub("ResourceError", ErrorCode::resource, {g_error, PyExc_OSError});
  sub("WorkerError", ErrorCode::worker_failed, {g_error});
  sub("InterruptedError", ErrorCode::interrupted, {g_error});
  PyObject* pool_error = sub("PoolError", ErrorCode::wrong_process, {g_error, PyExc_RuntimeError});
  sub("PoolClosedError", ErrorCode::shut_down, {pool_error});
  sub("CancelledError", ErrorCode::cancelled, {g_error});
  sub("TimeoutError", ErrorCode::timed_out, {g_error, PyExc_TimeoutError});
  sub("InternalError", ErrorCode::internal, {g_error});
  // The one place an Error becomes Python's: wherever it escapes a binding, its class (one
  // table, above), never a bare RuntimeError.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const shmgemm::Error& e) {
      const py::object x = exception_of(e);
      PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(x.ptr())), x.ptr());
    }
  });

  // A call's report, made JSON only when asked for (a dict from Python's last_report()).
  py::class_<shmgemm::Report>(m, "Report").def("json", [](const shmgemm::Report& r) {
    return shmgemm::to_json(r);
  });
  // The report of a product that numpy's matmul computed in the calling thread (matmul's path
  // for small products: 1-D or 2-D operands), with the engine's keys.
  m.def(
      "caller_report",
      [](const std::vector<std::int64_t>& a_shape, const std::vector<std::int64_t>& b_shape,
         const py::dtype& dtype, double seconds) {
        const auto d = engine_dtype(dtype.ptr());
        if (!d) throw py::type_error("unsupported dtype");
        shmgemm::Report r;
        r.m = static_cast<std::uint64_t>(a_shape.size() == 2 ? a_shape[0] : 1);
        r.k = static_cast<std::uint64_t>(a_shape.back());
        r.n = static_cast<std::uint64_t>(b_shape.size() == 2 ? b_shape[1] : 1);
        r.a_shape.assign(a_shape.begin(), a_shape.end());
        r.b_shape.assign(b_shape.begin(), b_shape.end());
        // 1-D or 2-D operands: a's rows (if any), then b's columns (if any).
        r.shape.assign(a_shape.begin(), a_shape.end() - 1);
        r.shape.insert(r.shape.end(), b_shape.begin() + 1, b_shape.end());
        r.dtype = shmgemm::dtype_name(*d);
        r.in_process = r.automatic = true;
        r.backing = shmgemm::Backing::shm;
        r.seconds = r.compute_seconds = seconds;
        r.calibration = "built-in defaults";
        r.plan_reason =
            "numpy's matmul in the calling thread: launching one worker takes longer than the "
            "whole product";
        return r;
      },
      py::arg("a_shape"), py::arg("b_shape"), py::arg("dtype"), py::arg("seconds"));

  m.def(
      "matmul",
      [](const py::array& a, const py::array& b, const py::array& out, unsigned workers,
         const std::string& launch, unsigned threads, bool in_process, bool progress,
         double timeout, bool stoppable) {
        const ArrayView av = view_of(a), bv = view_of(b);
        const MutableArrayView ov = out_view_of(out);
        const shmgemm::FileOptions o =
            options_of(workers, launch, threads, in_process, progress, timeout);
        auto run = [av, bv, ov](const shmgemm::FileOptions& x) {
          return shmgemm::matmul_into(av, bv, ov, x);
        };
        return run_stoppable(run, o, stoppable ? multiply_adds(av, bv) : 0);
      },
      py::arg("a"), py::arg("b"), py::arg("out"), py::arg("workers") = 0,
      py::arg("launch") = "auto", py::arg("threads") = 0, py::arg("in_process") = false,
      py::arg("progress") = false, py::arg("timeout") = 0.0, py::arg("stoppable") = true);

  m.def(
      "matmul_new",
      [](const py::array& a, const py::array& b, unsigned workers, const std::string& launch,
         unsigned threads, bool in_process, bool progress, double timeout) {
        const ArrayView av = view_of(a), bv = view_of(b);
        const shmgemm::FileOptions o =
            options_of(workers, launch, threads, in_process, progress, timeout);
        shmgemm::OwnedArray made;
        const shmgemm::Report r = run_stoppable(
            [&](const shmgemm::FileOptions& x) {
              shmgemm::Report report;
              made = shmgemm::matmul(av, bv, x, &report);
              return report;
            },
            o, multiply_adds(av, bv));
        return py::make_tuple(owned_array(made), r);
      },
      py::arg("a"), py::arg("b"), py::arg("workers") = 0, py::arg("launch") = "auto",
      py::arg("threads") = 0, py::arg("in_process") = false, py::arg("progress") = false,
      py::arg("timeout") = 0.0);

  m.def(
      "matmul_many",
      [](const std::vector<std::pair<py::array, py::array>>& pairs, unsigned workers,
         const std::string& launch, bool in_process, double timeout, bool copy) {
        std::vector<std::pair<ArrayView, ArrayView>> views;
        views.reserve(pairs.size());
        for (const auto& [a, b] : pairs)
          views.emplace_back(view_of(a), view_of(b));
        const auto [made, report] = run_many(views, workers, launch, in_process, timeout, copy);
        py::list arrays;
        for (const shmgemm::OwnedArray& x : made)
          arrays.append(owned_array(x));
        return py::make_tuple(arrays, report);
      },
      py::arg("pairs"), py::arg("workers") = 0, py::arg("launch") = "auto",
      py::arg("in_process") = false, py::arg("timeout") = 0.0, py::arg("copy") = true);
  // The same for a list of (a, b) tuples whose operands are all plain ndarrays (plain_operand),
  // converted and returned in one pass here, with numpy's result types (an operand's own dtype
  // object when it is the result's, a scalar for vector @ vector); None for any other list, and
  // for pairs numpy would refuse (the caller then checks each pair, with numpy's messages).
  m.def(
      "matmul_many_plain",
      [](const py::list& pairs, unsigned workers, const std::string& launch, bool in_process,
         double timeout, bool copy) -> py::object {
        // The pairs held here while the GIL is released: another thread may change the list.
        std::vector<py::object> held;
        std::vector<std::pair<ArrayView, ArrayView>> views;
        held.reserve(pairs.size());
        views.reserve(pairs.size());
        for (py::handle pair : pairs) {
          if (!PyTuple_Check(pair.ptr()) || PyTuple_GET_SIZE(pair.ptr()) != 2) return py::none();
          auto a = plain_operand(PyTuple_GET_ITEM(pair.ptr(), 0));
          auto b = plain_operand(PyTuple_GET_ITEM(pair.ptr(), 1));
          if (!a || !b) return py::none();
          held.push_back(py::reinterpret_borrow<py::object>(pair));
          views.emplace_back(std::move(*a), std::move(*b));
        }
        std::vector<shmgemm::OwnedArray> made;
        shmgemm::Report report;
        try {
          std::tie(made, report) = run_many(views, workers, launch, in_process, timeout, copy);
        } catch (const shmgemm::Error& e) {
          // Every pair is checked before any work: numpy's words for a refused pair come from
          // the caller's checks.
          if (e.code() == shmgemm::ErrorCode::shape_mismatch) return py::none();
          throw;
        }
        // One base object per block of results and one dtype object per result dtype; results
        // of one shape that lie one after another become one array, listed (numpy's own views
        // of it, each its own bytes), and so do read-only windows of one product equally far
        // apart (a stack such as sliding_window_view's, read-only).
        std::map<const void*, py::capsule> bases;
        auto base_of = [&](const shmgemm::OwnedArray& x) -> const py::capsule& {
          auto base = bases.find(x.owner.get());
          if (base == bases.end())
            base = bases
                       .emplace(x.owner.get(),
                                py::capsule(
                                    new std::shared_ptr<void>(x.owner),
                                    [](void* p) { delete static_cast<std::shared_ptr<void>*>(p); }))
                       .first;
          return base->second;
        };
        auto dtype_of_result = [&](std::size_t i) -> py::dtype {
          const DType t = made[i].view.dtype();
          if (views[i].first.dtype() == t || views[i].second.dtype() == t) {
            const int which = views[i].first.dtype() == t ? 0 : 1;
            return py::reinterpret_borrow<py::array>(PyTuple_GET_ITEM(held[i].ptr(), which))
                .dtype();
          }
          return numpy_dtype(t);
        };
        py::list arrays;
        for (std::size_t i = 0; i < made.size();) {
          const shmgemm::OwnedArray& x = made[i];
          const py::dtype d = dtype_of_result(i);
          const auto* first = static_cast<const std::byte*>(x.view.data());
          // The distance between two results of the run: each its own bytes, or for read-only
          // windows whatever it is.
          const std::ptrdiff_t step =
              x.read_only && i + 1 < made.size()
                  ? static_cast<const std::byte*>(made[i + 1].view.data()) - first
                  : static_cast<std::ptrdiff_t>(x.view.size()) *
                        static_cast<std::ptrdiff_t>(item_size(x.view.dtype()));
          std::size_t j = i + 1;
          while (j < made.size() && step > 0 && made[j].read_only == x.read_only &&
                 made[j].owner == x.owner && made[j].view.shape() == x.view.shape() &&
                 made[j].view.strides() == x.view.strides() &&
                 made[j].view.data() == first + static_cast<std::ptrdiff_t>(j - i) * step &&
                 dtype_of_result(j).is(d))
            ++j;
          std::vector<py::ssize_t> dims(x.view.shape().begin(), x.view.shape().end());
          if (j - i == 1) {
            const py::array result = result_array(x, d, base_of(x));
            arrays.append(dims.empty() ? result[py::tuple()] : py::object(result));
          } else {
            dims.insert(dims.begin(), static_cast<py::ssize_t>(j - i));
            std::vector<py::ssize_t> strides;
            if (x.read_only) {
              strides.assign(x.view.strides().begin(), x.view.strides().end());
              strides.insert(strides.begin(), step);
            }
            const py::array stack(d, dims, strides, x.view.data(), base_of(x));
            if (x.read_only) stack.attr("setflags")(py::arg("write") = false);
            for (py::handle r : stack)
              arrays.append(r);
          }
          i = j;
        }
        return py::make_tuple(arrays, report);
      },
      py::arg("pairs"), py::arg("workers") = 0, py::arg("launch") = "auto",
      py::arg("in_process") = false, py::arg("timeout") = 0.0, py::arg("copy") = true);

  m.def(
      "matmul_shape",
      [](const py::array& a, const py::array& b) {
        return shmgemm::matmul_shape(view_of(a), view_of(b));
      },
      py::arg("a"), py::arg("b"));
  m.def(
      "result_dtype",
      [](const py::dtype& a, const py::dtype& b) {
        const auto da = engine_dtype(a.ptr()), db = engine_dtype(b.ptr());
        if (!da || !db) throw py::type_error("unsupported dtype");
        return numpy_dtype(shmgemm::result_dtype(*da, *db));
      },
      py::arg("a"), py::arg("b"));

  m.def(
      "multiply_files",
      [](const std::string& a, const std::string& b, const std::string& out, unsigned workers,
         const std::string& launch, unsigned threads, bool in_process, const std::string& backing,
         bool copy_inputs, std::uint64_t rows_per_step, std::uint64_t memory, unsigned retries,
         bool fsync, double timeout) {
        shmgemm::FileOptions o = options_of(workers, launch, threads, in_process, false, timeout);
        if (backing == "shm")
          o.backing = shmgemm::Backing::shm;
        else if (backing != "file")
          throw py::value_error("backing: '" + backing + "' is neither 'file' nor 'shm'");
        o.copy_inputs = copy_inputs;
        o.rows_per_step = rows_per_step;
        o.memory = memory;
        o.retries = retries;
        o.fsync = fsync;
        // (the files' sizes are not known here: on a thread of its own)
        return run_stoppable(
            [&](const shmgemm::FileOptions& x) { return shmgemm::multiply_files(a, b, out, x); }, o,
            std::numeric_limits<double>::infinity());
      },
      py::arg("a"), py::arg("b"), py::arg("out"), py::arg("workers") = 0,
      py::arg("launch") = "auto", py::arg("threads") = 0, py::arg("in_process") = false,
      py::arg("backing") = "file", py::arg("copy_inputs") = false, py::arg("rows_per_step") = 0,
      py::arg("memory") = 0, py::arg("retries") = 0, py::arg("fsync") = false,
      py::arg("timeout") = 0.0);

  // in_caller(f, a, b, out): f(a, b, out) (f(a, b) when out is None), OpenBLAS's calls in it
  // marked as this thread's (in_caller above); a plain C function: pybind11's dispatch would
  // cost more than a small product.
  static PyMethodDef in_caller_def[] = {
      {"in_caller", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&in_caller)),
       METH_FASTCALL, "f(a, b, out) with no fork of shmgemm's meanwhile"},
      {nullptr, nullptr, 0, nullptr}};
  PyModule_AddFunctions(m.ptr(), in_caller_def);
  m.def("available_cores", &shmgemm::available_cores);
  m.def("max_threads", &shmgemm::max_threads_per_worker);
  m.def("in_process_flops", [](const std::string& dtype) {
    const auto d = shmgemm::dtype_from_name(dtype);
    if (!d) throw py::type_error("unsupported dtype " + dtype);
    return shmgemm::in_process_flops(*d);
  });
  m.def("automatic_launch",
        [] { return std::string(shmgemm::to_string(shmgemm::automatic_launch())); });
  m.def("matmul_flops", [](const std::vector<std::int64_t>& a, const std::vector<std::int64_t>& b) {
    return shmgemm::matmul_flops(a, b);
  });
  m.def("configuration", &shmgemm::configuration_json);
  m.def("supported_dtypes", [] { return std::string(shmgemm::supported_dtypes()); });
  m.def("blas_kernel", [] {
    const shmgemm::BlasKernel k = shmgemm::blas_kernel();
    return py::make_tuple(k.name, k.workers);
  });

  py::class_<PyPool>(m, "Pool")
      .def(py::init<unsigned, const std::string&, unsigned, std::size_t, double>(),
           py::arg("workers") = 0, py::arg("launch") = "auto", py::arg("threads") = 0,
           py::arg("arena_bytes") = 0, py::arg("timeout") = 0.0)
      .def("matmul", &PyPool::matmul)
      .def("submit", &PyPool::submit)
      .def("cancel", &PyPool::cancel)
      .def("collect", &PyPool::collect, py::arg("timeout"))
      .def("pending", &PyPool::pending)
      .def("alloc", &PyPool::alloc)
      .def("stats", &PyPool::stats)
      .def("workers", &PyPool::workers)
      .def("close", &PyPool::close)
      .def("closed", &PyPool::closed);
}
