// SHMGEMM_API marks what libshmgemm exports; everything else in it is hidden (as fmt's FMT_API
// and Arrow's ARROW_EXPORT do). Part of the public API.
#pragma once

#define SHMGEMM_API __attribute__((visibility("default")))
