/* The sanitizer's report (report.c): one JSON object per line. */
#ifndef JITPROBE_REPORT_H
#define JITPROBE_REPORT_H

#include <stdbool.h>

#include "engine.h"

struct violation;

/* A check entry's last violation record: a repeat of the same rule costs one atomic increment. */
struct violation_cache {
    struct violation *last;
};

bool report_open(const char *path);
void report_violation(struct violation_cache *cache, const struct rule *rule, const struct check_entry *e,
                      const struct line *l, unsigned vcpu);
/* The plugin checks nothing, for the reason why (plain text, no quotes or backslashes): recorded at
   once, and kept when the report is rewritten at exit. */
void report_refusal(const char *why);
void report_close(const char *status_json);

#endif
