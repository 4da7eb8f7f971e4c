#include "config.h"

#include "err.h"

const char *cp_strerror(int code)
{
    switch (code) {
    case CP_OK: return "success";
    case CP_ENOMEM: return "out of memory";
    case CP_ETOOBIG: return "limit exceeded";
    case CP_EINVAL: return "invalid input";
    case CP_EIO: return "input/output error";
    case CP_EDB: return "database error";
    case CP_ENOTFOUND: return "not found";
    case CP_ETIMEDOUT: return "timed out";
    case CP_EPARSE: return "parse error";
    case CP_ERETRY: return "temporary failure";
    case CP_ECONFLICT: return "conflict";
    case CP_EUNAVAIL: return "dependency unavailable";
    case CP_EPROTO: return "protocol error";
    case CP_ECHANGED: return "changed after being recorded";
    case CP_EBUSY: return "busy until later";
    }
    return "unknown error";
}
