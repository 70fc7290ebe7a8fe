/* version.h — the certa release version. */
#ifndef CERTA_LIB_VERSION_H
#define CERTA_LIB_VERSION_H

#define CERTA_VERSION "0.1.0"

#endif
