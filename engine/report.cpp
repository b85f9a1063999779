#include <nlohmann/json.hpp>

#include "engine/tooling.hpp"
#include "shmgemm/shmgemm.hpp"

namespace shmgemm {

double Report::gflops() const {
  return seconds > 0 ? 2.0 * double(batch) * double(m) * double(n) * double(k) / seconds / 1e9
                     : 0.0;
}

nlohmann::json report_json(const Report& r) {
  nlohmann::json candidates = nlohmann::json::array();
  for (const PlanCandidate& c : r.candidates)
    candidates.push_back({{"workers", c.workers},
                          {"threads", c.threads},
                          {"predicted_seconds", c.predicted_seconds}});
  return {{"m", r.m},
          {"k", r.k},
          {"n", r.n},
          {"batch", r.batch},
          {"a_shape", r.a_shape},
          {"b_shape", r.b_shape},
          {"shape", r.shape},
          {"dtype", r.dtype},
          {"workers", r.workers},
          {"threads_per_worker", r.threads_per_worker},
          {"launch", r.in_process ? "none" : to_string(r.launch)},
          {"backing", to_string(r.backing)},
          {"in_process", r.in_process},
          {"seconds", r.seconds},
          {"compute_seconds", r.compute_seconds},
          {"gflops", r.gflops()},
          {"retries", r.retries},
          {"launches", r.launches},
          {"copied_bytes", r.copied_bytes},
          {"rows_per_step", r.rows_per_step},
          {"memory_budget", r.memory_budget},
          {"panel_columns", r.panel_columns},
          {"panels", r.panels},
          {"slab_depth", r.slab_depth},
          {"prepared_bytes", r.prepared_bytes},
          {"limb_products", r.limb_products},
          {"plan",
           {{"automatic", r.automatic},
            {"reason", r.plan_reason},
            {"calibration", r.calibration},
            {"candidates", std::move(candidates)}}}};
}

std::string to_json(const Report& report) {
  return report_json(report).dump();
}

}  // namespace shmgemm
