/* permessage-deflate (RFC 7692) for websockets: the negotiation of the
 * Sec-WebSocket-Extensions offer, and one connection's compressor and
 * decompressor (zlib, raw deflate).
 *
 * Memory: zlib's state is allocated on the first compressed message in each
 * direction, through an allocator that charges every byte to a process-wide
 * count; an allocation that would pass the cap fails (the caller then sends
 * uncompressed, or closes 1013 when it cannot read a compressed message).
 * With the windows chosen here (VIAL_WS_PMD_WBITS, VIAL_WS_PMD_MEMLEVEL) a
 * connection holds about 11 KiB to inflate and 38 KiB to deflate
 * (docs/guide/websockets.md has the measured figures). */
#ifndef VIAL_HTTP_WS_DEFLATE_H
#define VIAL_HTTP_WS_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

/* The window vial compresses with, and asks clients to compress with when
 * they let it choose (client_max_window_bits without a value): 4 KiB. A
 * larger window gains little on the messages websockets carry and costs
 * 4x memory per step. memLevel 5: a 16 KiB hash table and pending buffer. */
#define VIAL_WS_PMD_WBITS 12
#define VIAL_WS_PMD_MEMLEVEL 5
/* zlib level 1: on a 4 KiB JSON message, level 6 costs about 50% more
 * server CPU per echo for 12% fewer bytes (bench/ws-deflate.py). */
#define VIAL_WS_PMD_LEVEL 1

/* Defaults of vial_config's ws_deflate_min and ws_deflate_memory_max. */
#define VIAL_WS_DEFLATE_MIN 128
#define VIAL_WS_DEFLATE_MEMORY_MAX ((size_t)64 << 20)

/* What was agreed; the window bits are the ones each side compresses with. */
typedef struct vial_ws_pmd_params {
    uint8_t server_no_context_takeover;
    uint8_t client_no_context_takeover;
    uint8_t server_max_window_bits; /* 9..15: the window vial's deflate uses */
    uint8_t client_max_window_bits; /* 8..15: the window vial inflates with */
} vial_ws_pmd_params;

/* Reads a Sec-WebSocket-Extensions value (NULL: none) and accepts the first
 * acceptable permessage-deflate offer (RFC 7692 section 7): an offer with an
 * unknown parameter, a duplicate, a value out of range or a value where none
 * is allowed is declined, and so is server_max_window_bits=8 (zlib's raw
 * deflate cannot use a 256-byte window). Other extensions are skipped. On
 * acceptance returns 1, fills *out and writes the response value
 * ("permessage-deflate; ...") into resp; 0 when no offer is accepted
 * (including a value that does not parse as an extension list). */
int vial_ws_pmd_negotiate(const char *offers, vial_ws_pmd_params *out, char *resp, size_t cap);

/* The bytes of zlib state held by all connections now. */
size_t vial_ws_pmd_memory(void);

/* 1 when a connection with these parameters, compressing both ways, would
 * fit under memory_max (0: no cap) with what all connections hold now: the
 * handshake declines the extension otherwise, so new connections go
 * uncompressed instead of failing later. zlib's documented sizes, plus its
 * state structs. */
int vial_ws_pmd_room(const vial_ws_pmd_params *p, size_t memory_max);

/* One connection's compression state; zero it, then set params and
 * memory_max (the process-wide cap; 0: none). */
typedef struct vial_ws_pmd {
    vial_ws_pmd_params params;
    size_t memory_max;
    /* private */
    void *inf, *def;   /* z_stream, allocated on first use */
    size_t held;       /* bytes of zlib state charged for this connection */
    uint8_t inf_done;  /* the message's deflate stream ended (BFINAL) */
} vial_ws_pmd;

/* Results besides 0 / -ENOMEM: the close code to fail the connection with. */
#define VIAL_WS_PMD_TOO_BIG (-1009)   /* inflated past max */
#define VIAL_WS_PMD_CORRUPT (-1007)   /* not a valid deflate stream */
#define VIAL_WS_PMD_NO_MEMORY (-1013) /* the zlib state would pass the cap */

/* Inflates in[0..n), part of a compressed message, appending the output to
 * *buf (len bytes used, cap allocated; grown with realloc, never beyond
 * max + 1 bytes). fin: these are the message's last bytes (the 00 00 ff ff
 * trailer is added). Inflation stops as soon as the output passes max, so a
 * small input that would inflate to gigabytes costs max + 1 bytes. Returns
 * 0 or one of the codes above. */
int vial_ws_pmd_inflate(vial_ws_pmd *d, const uint8_t *in, size_t n, int fin, uint8_t **buf,
                        size_t *len, size_t *cap, size_t max);

/* Compresses a whole message into *out (malloc'd, *out_len bytes, without
 * the 00 00 ff ff trailer). Returns 0; 1 when it is not worth it (the output
 * would not be smaller: send in[] uncompressed, the compressor was reset so
 * the peer's context stays right); or < 0 (-ENOMEM, VIAL_WS_PMD_NO_MEMORY:
 * send uncompressed). */
int vial_ws_pmd_deflate(vial_ws_pmd *d, const void *in, size_t n, uint8_t **out, size_t *out_len);

/* Frees the zlib state (the connection ends). */
void vial_ws_pmd_free(vial_ws_pmd *d);

#endif
