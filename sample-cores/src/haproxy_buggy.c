/* A native Lua 5.3 module for HAProxy: routes a request path to the header
   that authenticates it. The route table trusts that every route has an auth
   policy, but webhook routes are signed in the body and have none (NULL), so
   any /webhook/... request dereferences a NULL pointer inside HAProxy.

   Built as buggy.so and loaded with require("buggy") from haproxy_crash.lua. */
#include <stddef.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

struct auth_policy {
    const char *header;   /* header that must carry the credential */
    size_t min_length;
};

struct route {
    const char *prefix;   /* first path segment */
    const struct auth_policy *auth;   /* NULL: authenticated elsewhere */
    int backend_id;
};

static const struct auth_policy bearer = { "authorization", 16 };
static const struct auth_policy api_key = { "x-api-key", 32 };

static const struct route routes[] = {
    { "api", &bearer, 1 },
    { "admin", &bearer, 2 },
    { "partner", &api_key, 3 },
    { "webhook", NULL, 4 },   /* signature is checked by the backend */
    { NULL, NULL, 0 },
};

static const struct route fallback = { "", &bearer, 0 };

/* First segment of "/a/b/c" is "a": copy it into out (bounded). */
static size_t first_segment(const char *path, char *out, size_t cap)
{
    size_t n = 0;
    while (*path == '/')
        path++;
    while (path[n] != '\0' && path[n] != '/' && path[n] != '?' && n + 1 < cap) {
        out[n] = path[n];
        n++;
    }
    out[n] = '\0';
    return n;
}

static const struct route *find_route(const char *segment)
{
    for (const struct route *r = routes; r->prefix != NULL; r++)
        if (strcmp(r->prefix, segment) == 0)
            return r;
    return &fallback;
}

/* The bug: route->auth is NULL for webhook routes. */
__attribute__((noinline))
const char *route_auth_header(const struct route *route, size_t *min_length)
{
    *min_length = route->auth->min_length;
    return route->auth->header;
}

/* buggy.parse_path(path) -> backend_id, auth_header, min_length */
static int buggy_parse_path(lua_State *L)
{
    size_t len;
    const char *path = luaL_checklstring(L, 1, &len);
    char segment[64];
    size_t min_length = 0;

    first_segment(path, segment, sizeof(segment));
    const struct route *route = find_route(segment);
    const char *header = route_auth_header(route, &min_length);

    lua_pushinteger(L, route->backend_id);
    lua_pushstring(L, header);
    lua_pushinteger(L, (lua_Integer)min_length);
    return 3;
}

static const luaL_Reg buggy_functions[] = {
    { "parse_path", buggy_parse_path },
    { NULL, NULL },
};

int luaopen_buggy(lua_State *L)
{
    luaL_newlib(L, buggy_functions);
    return 1;
}
