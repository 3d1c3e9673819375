{
  # shmr_fuse3: N-API binding over libfuse3's low-level API (plain C, node_api.h only).
  # Build: node scripts/build-native.mjs fuse3   (offline, against the installed headers)
  "targets": [
    {
      "target_name": "shmr_fuse3",
      "sources": ["shmr_fuse3.c", "ops.c", "replies.c", "pending.c", "util.c",
                  "write_pool.c", "chunk_read.c", "map.c", "attr_cache.c"],
      "cflags": ["<!@(pkg-config --cflags fuse3)", "-std=gnu11", "-O2", "-Wall", "-Wextra",
                 "-Wno-unused-parameter", "-Wno-missing-field-initializers", "-fvisibility=hidden"],
      "libraries": ["<!@(pkg-config --libs fuse3)", "-lisal"]
    }
  ]
}
