/* version.h - the kanoa-mlops version string. */
#ifndef KM_VERSION_H
#define KM_VERSION_H

#define KM_VERSION "0.1.0"

#endif
