"""Verifies a JWT the way an OIDC relying party (such as STS) does, with PyJWT — an
implementation independent of the one that signed it.

    verify_jwt.py --jwks FILE|URL --token JWT --issuer ISS --audience AUD [--at-offset SECONDS]

Picks the key by the token's `kid` from the JWKS, checks the signature, `iss`, `aud`, `exp`,
`iat`/`nbf` (at now + offset, to test expiry). Prints {"valid": true, "claims": {...}} and
exits 0, or {"valid": false, "error": "..."} and exits 1.
"""

import argparse
import json
import sys
import urllib.request

import jwt


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jwks", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--audience", required=True)
    parser.add_argument("--at-offset", type=int, default=0,
                        help="verify as if this many seconds later")
    args = parser.parse_args()
    if args.jwks.startswith("http"):
        with urllib.request.urlopen(args.jwks, timeout=5) as answer:
            document = json.load(answer)
    else:
        with open(args.jwks) as handle:
            document = json.load(handle)
    try:
        kid = jwt.get_unverified_header(args.token)["kid"]
        keys = {k["kid"]: k for k in document["keys"]}
        if kid not in keys:
            raise jwt.InvalidKeyError(f"kid {kid} is not in the JWKS")
        key = jwt.PyJWK.from_dict(keys[kid])
        claims = jwt.decode(args.token, key.key, algorithms=[key.algorithm_name],
                            audience=args.audience, issuer=args.issuer,
                            leeway=-args.at_offset,
                            options={"require": ["iss", "aud", "sub", "iat", "exp", "jti"],
                                     # Seen from later, iat/nbf look like the past: only
                                     # the expiry is in question then.
                                     "verify_iat": args.at_offset == 0,
                                     "verify_nbf": args.at_offset == 0})
    except jwt.PyJWTError as err:
        print(json.dumps({"valid": False, "error": f"{type(err).__name__}: {err}"}))
        return 1
    print(json.dumps({"valid": True, "claims": claims}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
