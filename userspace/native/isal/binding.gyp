{
  # shmr_isal: CRC32C and Reed-Solomon erasure coding from Intel ISA-L (Debian libisal-dev).
  # Plain C against node_api.h only; the only exported symbol is napi_register_module_v1.
  "targets": [
    {
      "target_name": "shmr_isal",
      "sources": ["shmr_isal.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wshadow", "-fvisibility=hidden"],
      "cflags!": ["-fno-exceptions"],
      "libraries": ["-lisal", "-lpthread"]
    }
  ]
}
