/* unicode_int.h - private: layout of the generated tables (unicode_data.c). */
#ifndef ENG_UNICODE_INT_H
#define ENG_UNICODE_INT_H

#include <stddef.h>
#include <stdint.h>

struct uni__range {
    uint32_t start; /* first code point of a run; the run ends where the next starts */
    uint32_t flags; /* enum uni_flag bits */
};

struct uni__pair {
    uint32_t from;
    uint32_t to;
};

extern const struct uni__range uni__ranges[];
extern const size_t uni__n_ranges;
extern const struct uni__pair uni__lower[];
extern const size_t uni__n_lower;
extern const struct uni__pair uni__nfd[];
extern const size_t uni__n_nfd;

#endif
